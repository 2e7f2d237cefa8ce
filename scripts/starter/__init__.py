"""The research that built the starter model: the digits world (MNIST, FSDD, captions),
synthetic voices, and the training recipe. Used by the scripts beside this folder and kept out
of the installed `crossmodal` package; the record of what was tried is docs/research/."""
