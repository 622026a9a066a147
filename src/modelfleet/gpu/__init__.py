"""GPU host checks that run on the controller or in the hardware check: DCGM collector lists.

The host-side GPU facts live in the collection's module_utils (``plugins/module_utils/gpu_facts.py``): they run
on bare hosts before anything of modelfleet is installed there.
"""
