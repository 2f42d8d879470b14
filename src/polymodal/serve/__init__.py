"""``polymodal serve``: trained runs and search indexes over HTTP (FastAPI + uvicorn).

* :mod:`~polymodal.serve.batcher`: concurrent requests grouped into one forward pass.
* :mod:`~polymodal.serve.predictor` / :mod:`~polymodal.serve.searcher`: a run / an index,
  reading requests with the library's decoders and answering batches.
* :mod:`~polymodal.serve.uploads`: size and type limits of uploaded files.
* :mod:`~polymodal.serve.app`: :func:`~polymodal.serve.app.create_app`, the routes.

Like inference and search, nothing here imports :mod:`polymodal.training`.  The runtime
dependencies are the ``serve`` extra (``pip install -e ".[serve]"``).
"""
