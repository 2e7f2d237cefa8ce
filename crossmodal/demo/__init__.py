"""The demo: the bundled corpus (MNIST digits, spoken digits, captions) indexed and searched offline."""
