"""Digit captions in Chinese (simplified and traditional), Spanish, French and German.

The starter model learns what a query means only from captions, so each language needs its
own: the digit's numeral and words, the phrasings people type for an image ("a handwritten
seven") and for a sound ("someone saying seven"). As for English (`digits_world`), every
language has training phrasings and held-out phrasings that training never sees, so the
per-language scores measure whether the text tower reads new wordings, not memorised strings.

Surface forms a user may type are generated rather than listed: traditional characters from
the simplified phrasing (`to_traditional`), full-width numerals, and for the Latin-script
languages each phrasing without its accents ("numero", "funf") and, for German, with the
umlaut spelt out ("fuenf"). A phrasing and its variants always stay in the same split.
"""

from __future__ import annotations

import unicodedata

from crossmodal.errors import ConfigError

LANGUAGES: tuple[str, ...] = ("zh-Hans", "zh-Hant", "es", "fr", "de")
"""Language tags of the captions this module writes (English lives in `digits_world`)."""

ZH_DIGITS = "零一二三四五六七八九"
ZH_FINANCIAL = "零壹贰叁肆伍陆柒捌玖"
"""The 'capital' numerals of cheques and contracts (simplified; `to_traditional` maps them)."""
FULL_WIDTH = "０１２３４５６７８９"
ES_WORDS = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve")
FR_WORDS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf")
DE_WORDS = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")

# Placeholders: {zh} 七, {cap} 柒, {n} 7, {fw} ７ (Chinese); {n} 7, {w} siete, {W} Siete (others).
ZH_TRAIN: tuple[str, ...] = (
    "{zh}", "{n}", "{fw}", "{cap}", "数字{zh}", "数字{n}", "数字{fw}", "数字{cap}", "这是{zh}",
    "这是数字{n}", "一个{zh}", "{zh}（{n}）", "标签：{zh}", "类别{n}", "号码{zh}",
    "手写的{zh}", "手写数字{n}", "手写的数字{zh}", "一张手写{zh}的图片", "{zh}的照片",
    "黑白图片里的{n}", "扫描的手写数字{fw}", "写在纸上的{zh}", "画出来的{zh}", "铅笔写的{n}",
    "有人说{zh}", "有人在说{zh}", "一个人说{zh}", "念{zh}的声音", "说出数字{zh}", "录音：{zh}",
    "{zh}的读音", "一段说{zh}的录音", "听到有人说{zh}", "一个声音说{zh}",
    # Long ones, so that positions up to the end of the context are trained too.
    "一段有人用很清楚的声音大声说出数字{zh}的录音", "一张黑白扫描图片，上面是用铅笔手写的数字{zh}",
)
ZH_HELDOUT: tuple[str, ...] = (
    "阿拉伯数字{n}", "用笔写的{zh}", "一个手写的{n}", "图片上是数字{zh}", "这张图是{fw}",
    "数字{zh}的图像", "写着{zh}的纸条", "墨水画的数字{zh}", "有人读出{zh}", "一段录音，内容是{zh}",
    "说{zh}的声音", "大声说出{zh}", "他说了{zh}", "朗读数字{zh}", "我听见{zh}",
)
ES_TRAIN: tuple[str, ...] = (
    "{w}", "{W}", "el número {n}", "el número {w}", "número {n}", "el dígito {w}", "el dígito {n}",
    "la cifra {w}", "cifra {n}", "es un {w}", "esto es un {n}", "la palabra {w}",
    "un {w} escrito a mano", "un {n} manuscrito", "una foto de un {n}", "una imagen del número {w}",
    "un dibujo del número {n}", "un {w} escrito con lápiz", "un {n} en blanco y negro",
    "una foto en blanco y negro de un número {w} escrito a mano con un lápiz",
    "alguien diciendo {w}", "una voz que dice {w}", "una grabación de alguien diciendo {w}",
    "una persona pronuncia el número {w}", "se oye {w}", "el sonido de la palabra {w}",
)
ES_HELDOUT: tuple[str, ...] = (
    "dígito {w}", "el valor {n}", "un {n} dibujado a mano", "una imagen escaneada de un {w}",
    "el número {w} escrito en papel", "una muestra de escritura: {n}", "una fotografía del dígito {w}",
    "alguien pronunciando el número {w}", "una grabación de voz: {w}", "un clip de audio de la palabra {w}",
    "una persona contando en voz alta: {w}", "{w}, dicho en voz alta", "un hablante dice el dígito {n}",
)
FR_TRAIN: tuple[str, ...] = (
    "{w}", "{W}", "le chiffre {w}", "le chiffre {n}", "le nombre {n}", "le nombre {w}", "numéro {n}",
    "c'est un {w}", "ceci est un {n}", "le mot {w}",
    "un {w} écrit à la main", "un {n} manuscrit", "une photo d'un {n}", "une image du chiffre {w}",
    "un dessin du nombre {n}", "un {w} écrit au crayon", "un {n} en noir et blanc",
    "une photo en noir et blanc d'un chiffre {w} écrit à la main au crayon",
    "quelqu'un qui dit {w}", "une voix qui dit {w}", "un enregistrement de quelqu'un disant {w}",
    "une personne prononce le nombre {w}", "on entend {w}", "le son du mot {w}",
)
FR_HELDOUT: tuple[str, ...] = (
    "chiffre {w}", "la valeur {n}", "un {n} dessiné à la main", "une image numérisée d'un {w}",
    "le nombre {w} écrit sur du papier", "un échantillon d'écriture : {n}", "une photographie du chiffre {w}",
    "quelqu'un prononçant le nombre {w}", "un enregistrement vocal : {w}", "un extrait audio du mot {w}",
    "une personne compte à voix haute : {w}", "{w}, dit à voix haute", "un locuteur dit le chiffre {n}",
)
DE_TRAIN: tuple[str, ...] = (
    "{w}", "{W}", "die Zahl {n}", "die Zahl {w}", "die Ziffer {w}", "die Ziffer {n}", "Nummer {n}",
    "das ist eine {w}", "hier steht {n}", "das Wort {w}",
    "eine handgeschriebene {w}", "eine handgeschriebene {n}", "ein Foto einer {n}", "ein Bild der Ziffer {w}",
    "eine Zeichnung der Zahl {n}", "eine mit Bleistift geschriebene {w}", "eine {n} in Schwarzweiß",
    "ein Schwarzweißfoto einer mit einem Bleistift von Hand geschriebenen Ziffer {w}",
    "jemand sagt {w}", "eine Stimme sagt {w}", "eine Aufnahme von jemandem, der {w} sagt",
    "eine Person spricht die Zahl {w}", "man hört {w}", "der Klang des Wortes {w}",
)
DE_HELDOUT: tuple[str, ...] = (
    "Ziffer {w}", "der Wert {n}", "eine von Hand gezeichnete {n}", "ein eingescanntes Bild einer {w}",
    "die Zahl {w} auf Papier geschrieben", "eine Schriftprobe: {n}", "eine Fotografie der Ziffer {w}",
    "jemand spricht die Zahl {w} aus", "eine Sprachaufnahme: {w}", "ein Audioclip des Wortes {w}",
    "eine Person zählt laut: {w}", "{w}, laut gesagt", "ein Sprecher sagt die Ziffer {n}",
)

_TRADITIONAL = str.maketrans({
    "数": "數", "说": "說", "写": "寫", "图": "圖", "录": "錄", "声": "聲", "读": "讀", "张": "張",
    "个": "個", "这": "這", "听": "聽", "笔": "筆", "画": "畫", "扫": "掃", "标": "標", "签": "籤",
    "类": "類", "别": "別", "号": "號", "码": "碼", "纸": "紙", "见": "見", "铅": "鉛", "里": "裡",
    "来": "來", "内": "內", "条": "條", "贰": "貳", "叁": "參", "陆": "陸", "们": "們", "着": "著",
})
_SPLITS = {
    "zh": (ZH_TRAIN, ZH_HELDOUT), "es": (ES_TRAIN, ES_HELDOUT), "fr": (FR_TRAIN, FR_HELDOUT),
    "de": (DE_TRAIN, DE_HELDOUT),
}
_WORDS = {"es": ES_WORDS, "fr": FR_WORDS, "de": DE_WORDS}


def to_traditional(text: str) -> str:
    """The traditional-character spelling of a simplified phrasing (only the characters these
    captions use are mapped; the digits 零 to 九 are the same in both)."""
    return text.translate(_TRADITIONAL)


def strip_accents(text: str) -> str:
    """The text as typed on a keyboard without accents: "número" -> "numero", "fünf" -> "funf"."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def spell_umlauts(text: str) -> str:
    """German's own fallback for a keyboard without umlauts: "fünf" -> "fuenf", "ß" -> "ss"."""
    for umlaut, spelt in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"), ("ß", "ss")):
        text = text.replace(umlaut, spelt)
    return text


def _variants(lang: str, template: str, digit: int) -> list[tuple[str, str]]:
    """(language tag, text) for every surface form of one phrasing of one digit."""
    if lang == "zh":
        text = template.format(zh=ZH_DIGITS[digit], cap=ZH_FINANCIAL[digit], n=str(digit), fw=FULL_WIDTH[digit])
        return [("zh-Hans", text), ("zh-Hant", to_traditional(text))]
    word = _WORDS[lang][digit]
    text = template.format(n=str(digit), w=word, W=word.capitalize())
    forms = [text, strip_accents(text)] + ([spell_umlauts(text)] if lang == "de" else [])
    return [(lang, form) for form in dict.fromkeys(forms)]


def multilingual_captions(split: str) -> list[tuple[str, str, str]]:
    """Every caption of one split ("train" or "heldout") in every language, as (text, label,
    language tag), phrasing by phrasing; a text that two forms spell alike appears once."""
    if split not in ("train", "heldout"):
        raise ConfigError(f"unknown caption split {split!r}; expected 'heldout' or 'train'")
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for lang, (train, heldout) in _SPLITS.items():
        for template in train if split == "train" else heldout:
            for digit in range(10):
                for tag, text in _variants(lang, template, digit):
                    if text not in seen:
                        seen.add(text)
                        out.append((text, str(digit), tag))
    return out
