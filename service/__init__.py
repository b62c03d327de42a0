"""Service mode (``python run.py --api HOST:PORT``): a control API, Prometheus metrics and a
web page that plays every camera, served beside the running graph."""
