"""AWS for GPU serving (the builder behind ``pulumi/aws``): an EKS node group labelled and tainted for
``nvidia.com/gpu`` (the Kubernetes path), or GPU instances with an Ansible inventory for
``provision_gpu_hosts.yml`` (the bare-metal path). :mod:`.settings` checks the stack configuration,
:mod:`.program` declares the resources, :mod:`.inventory` writes the inventory."""
