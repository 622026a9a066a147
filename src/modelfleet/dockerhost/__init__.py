"""The Docker host path: the model-server image's build context and the builder behind ``pulumi/docker``.

- :mod:`.context` stages a build context (``docker/Dockerfile``, the wheelhouse, one verified artifact);
- :mod:`.settings` reads and checks the program's configuration (pydantic, path-qualified errors);
- :mod:`.router` renders the router role's HAProxy configuration for containers;
- :mod:`.program` declares the resources (pulumi-docker): images, server slots, drift exporter, router.
"""
