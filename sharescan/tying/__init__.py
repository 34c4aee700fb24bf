"""Parameter tying, then sharing (Deep Learning, Goodfellow et al., 7.9).

``groups`` says which parameters to tie, ``penalty`` pulls them together,
``share`` forces each group into one ``nn.Parameter``, ``run`` fine-tunes and
saves; ``sharescan.tie(...)`` is the entry point.
"""
