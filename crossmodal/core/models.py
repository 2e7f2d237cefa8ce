"""Which models a collection can be built with, and keeping each collection to its own.

Four routes lead to a model (`available_models` lists them, each with a command): a trained
model shipped with crossmodal, a pretrained open_clip model used as it is (text and images, no
training), a config trained on the user's pairs, and an audio-text model (CLAP) bridged into an
image-text model's space through text alone. A collection's vectors are only
comparable with vectors of the very same weights, so `check_collection_model` refuses any
other, and a model without a tower for some modality refuses queries and targets of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal.aligner.registry import (
    OPEN_CLIP_EXAMPLE,
    list_aligner_configs,
    list_pretrained,
    missing_tower_reason,
    needs_training,
    read_aligner_config,
    source_identity,
)
from crossmodal.core.indexing import model_info
from crossmodal.errors import CollectionError, ModelChangedError, QueryError
from crossmodal.search.query import TARGETS, Query
from crossmodal.storage.collection import Collection

if TYPE_CHECKING:  # torch loads with the model, not with the core
    from crossmodal.aligner.model import Aligner
    from crossmodal.aligner.text_only import TextOnlyModel


def available_models(open_clip: bool = False) -> dict[str, Any]:
    """The routes to a model, each with what it is, its names and one example command; with
    ``open_clip``, every open_clip architecture and its pretrained tags too. ``pretrained`` and
    ``configs`` list the shipped names as before."""
    configs = list_aligner_configs()
    ready = [c for c in configs if not needs_training(read_aligner_config(c))]
    routes: dict[str, Any] = {
        "shipped": {
            "what": "trained models shipped with crossmodal, ready to use (the starter model knows only digits)",
            "models": list_pretrained(),
            "example": "crossmodal index PATH... --collection NAME --model starter"},
        "open_clip": {
            "what": "a pretrained open_clip model as it is, no training: text and images in CLIP's space, no audio; "
                    "open_clip:ARCH/TAG downloads the weights once, open_clip:ARCH/FILE reads a local file",
            "models": ["open_clip:ARCH/TAG", "open_clip:ARCH/path/to/weights.safetensors", *ready],
            "example": f"crossmodal index ~/Pictures notes/ --collection photos --model {OPEN_CLIP_EXAMPLE}"},
        "train": {
            "what": "configs to train on your pairs (clip-vit-b-32-audio: an audio tower trained into the frozen "
                    "open_clip's space; clip-vit-b-32-clap: a head on CLAP's frozen audio tower, needs "
                    "crossmodal[clap]); training writes a checkpoint folder to give as --model",
            "configs": [c for c in configs if c not in ready],
            "example": "crossmodal train --config clip-vit-b-32-audio --list pairs.jsonl "
                       "--freeze-backbones text,image --out models/clip-audio"},
        "bridge": {
            "what": "an audio tower for an image-text model with no audio or image pairs: a pretrained CLAP (a folder "
                    "or hub id, needs crossmodal[clap]) or a crossmodal audio-text model, carried into its space by a "
                    "head trained on captions embedded by both text towers; writes a checkpoint folder to give as "
                    "--model (docs/bridge.md)",
            "models": ["CLAP: laion/clap-htsat-unfused or a folder written by ClapModel.save_pretrained",
                       "a checkpoint folder with text and audio towers"],
            "example": f"crossmodal bridge --image-text {OPEN_CLIP_EXAMPLE} --audio-text laion/clap-htsat-unfused "
                       "--out models/clip-clap"},
        "open_clip_architectures": {
            "what": "every open_clip architecture (ARCH) and its pretrained tags (TAG)",
            "example": "crossmodal models --open-clip"},
    }
    listing: dict[str, Any] = {"routes": routes, "pretrained": list_pretrained(), "configs": configs}
    if open_clip:
        import open_clip as oc

        from crossmodal.aligner.open_clip_source import list_open_clip_models

        names = list_open_clip_models()
        tags: dict[str, list[str]] = {}
        for arch, tag in oc.list_pretrained():
            tags.setdefault(arch, []).append(tag)
        listing["open_clip"] = names
        routes["open_clip_architectures"]["architectures"] = {name: tags.get(name, []) for name in names}
    return listing


def _weights(model: dict[str, Any]) -> str:
    """A recorded model as a person reads it: its pretrained weights when known, else its id."""
    source = model.get("source")
    if not source:
        return f"model {model.get('id')}"
    seen = []
    for s in source.values():
        text = (f"open_clip {s['architecture']} weights file {s['pretrained']} (SHA-256 {s['sha256'][:12]}…)"
                if s.get("sha256") else f"open_clip {s['architecture']} tag {s['pretrained']}")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def check_collection_model(coll: Collection, aligner: Aligner | TextOnlyModel, ref: str | Path) -> None:
    """Refuse ``aligner`` (loaded from ``ref``) for ``coll`` unless it is the very model its
    vectors come from: same checksum or tag, and for pretrained weights the same architecture."""
    info = model_info(aligner, str(ref))
    mine = coll.manifest["model"]
    recorded = mine.get("source")
    if recorded and info.source and source_identity(recorded) != source_identity(info.source):
        if info.ref == mine.get("ref"):
            renamed = any(s.get("sha256") for s in info.source.values())
            raise ModelChangedError(
                f"collection {coll.name!r} was built with {_weights(mine)}; the same reference now loads other weights "
                f"({_weights({'source': info.source})}){', a different file under the same name' if renamed else ''}. "
                f"Put the original weights back, or rebuild the collection for these with `crossmodal index PATH... "
                f"--collection {coll.name} --model {info.ref} --rebuild`")
        raise CollectionError(
            f"collection {coll.name!r} was built with {_weights(mine)}, not {_weights({'source': info.source})}: "
            f"their vectors are not comparable. Search it without --model (it uses its own), or rebuild it for these "
            f"weights with `crossmodal index PATH... --collection {coll.name} --model {info.ref} --rebuild`")
    try:
        coll.check_model(info)
    except CollectionError:
        if info.ref != mine.get("ref"):
            raise
        raise ModelChangedError(
            f"collection {coll.name!r} was built with model {mine.get('id')}, but {info.ref} now loads "
            f"{info.model_id}: the weights changed since it was indexed. Put the original weights back, or "
            f"rebuild it for them with `crossmodal index PATH... --collection {coll.name} --model {info.ref} "
            "--rebuild`") from None


def check_query_modalities(query: Query, aligner: Aligner | TextOnlyModel) -> None:
    """Refuse a query part to embed, or a target named on its own, of a modality the model has
    no tower for (searching every target is fine: that one index is simply empty)."""
    for part in query.parts:
        if part.vector is None and part.modality not in aligner.modalities:
            raise QueryError(f"{part.modality}: {missing_tower_reason(aligner, part.modality)}")
    if query.targets != TARGETS:
        for target in query.targets:
            if target != "joint" and target not in aligner.modalities:
                raise QueryError(f"targets: nothing to search in {target}: {missing_tower_reason(aligner, target)}")
