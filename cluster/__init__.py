"""Cameras on a Ray cluster: worker actors, each a FrameGraph graph serving a group of
cameras (``cluster.worker``), placed and kept running by a controller in the API process
(``cluster.controller``). Ray is imported only when a cluster is used, so everything else
runs without it."""
