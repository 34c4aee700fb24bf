"""Apply an analysis to an ONNX graph: share what it stores twice, then verify.

One rewrite per module: ``rename`` (identical and near copies read the kept
tensor), ``rebuild`` (transposed, negated and scaled copies become one node
over the kept tensor), ``rows`` (unique rows plus a Gather); opt-in,
``strip`` (``--strip-debug``) and ``fold`` (``--simplify``, with ``tidy``,
``reshape`` and ``shapes``). ``dedup`` orchestrates them, ``verify`` checks
the result with onnx.checker and onnxruntime, ``ram`` measures what
onnxruntime holds, ``export`` brings a PyTorch model in.
"""
