#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: onnx_convert
short_description: Convert a trained model to a validated, optimized, stamped ONNX artifact
version_added: "0.1.0"
description:
  - Reads a modelfleet model spec (C(model.yml)) and builds the artifact directory
    O(output_dir)/<name>/<version>/ with C(model.onnx), C(profile.json) (reference data profile for drift
    monitoring) and C(manifest.json) (sha256 of every file, parity figures, converter versions).
  - Sources are scikit-learn (skl2onnx), PyTorch (C(torch.onnx.export)), existing ONNX files, and
    TensorFlow/Keras (tf2onnx) where installed.
  - "The graph is validated in this order, each failure reported with its stage: the full ONNX checker,
    strict shape inference, the spec's declared inputs and outputs, and numeric parity between the source
    model and ONNX Runtime on the spec's samples (tolerance scaled to the output range; identical predicted
    classes for classifiers)."
  - Idempotent; the artifact is keyed by a hash of the source bytes, the spec's conversion settings, the
    sample and reference data and the converter versions. A run with the same inputs changes nothing.
    A different build for an existing name and version is refused unless O(force=true), because a published
    version is immutable.
  - The artifact is written to a temporary directory and renamed into place, so a failure never leaves a
    half-written artifact.
  - "Usually runs on the controller (C(delegate_to: localhost), C(run_once: true)); the artifact is then
    distributed to the serving hosts."
author:
  - modelfleet contributors (@modelfleet)
options:
  spec:
    description:
      - Path of the model spec (C(model.yml)) on the host the module runs on. Paths inside the spec are
        relative to its directory. Give an absolute path (for example with the P(ansible.builtin.realpath#filter)
        filter); a relative one resolves against the module's working directory, not the playbook's.
    type: path
    required: true
  output_dir:
    description:
      - Root of the artifact repository. The artifact goes to O(output_dir)/<name>/<version>/.
    type: path
    required: true
  force:
    description:
      - Replace an existing artifact of the same name and version that was built from different inputs.
    type: bool
    default: false
requirements:
  - python >= 3.11
  - modelfleet[convert] (the C(modelfleet) Python distribution with its converter extras)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the build key and reports whether the artifact would be built; converts nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the manifest before and after. In check mode the new manifest is not known yet.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Heavy libraries (ONNX, ONNX Runtime, the framework converters) are imported only when the module runs.
seealso:
  - name: Open Neural Network Exchange
    description: The ONNX format and its checker.
    link: https://onnx.ai/
"""

EXAMPLES = r"""
- name: Build the credit-risk artifact on the controller
  modelfleet.serving.onnx_convert:
    spec: examples/credit-risk/model.yml
    output_dir: /var/lib/modelfleet/artifacts
  delegate_to: localhost
  run_once: true
  register: artifact

- name: Show where it went and how close ONNX Runtime is to the source model
  ansible.builtin.debug:
    msg: "{{ artifact.path }}: {{ artifact.parity.outputs }}"

- name: Rebuild a version whose source changed (normally you raise the version instead)
  modelfleet.serving.onnx_convert:
    spec: models/churn/model.yml
    output_dir: /srv/artifacts
    force: true
"""

RETURN = r"""
path:
  description: The artifact directory.
  returned: always
  type: str
  sample: /var/lib/modelfleet/artifacts/credit-risk/1
outcome:
  description: What was done, one of V(built), V(rebuilt), V(unchanged), V(would build), V(would rebuild).
  returned: always
  type: str
  sample: built
reason:
  description: Why it was done (for example which input changed).
  returned: always
  type: str
  sample: no artifact at this version yet
build_key:
  description: sha256 identifying the inputs of the build.
  returned: always
  type: str
  sample: 5d41402abc4b2a76b9719d911017c592d8f9a0f1b3c4e5d6a7b8c9d0e1f2a3b4
model:
  description:
    - The model spec as C(modelfleet.spec) validated it, every default filled in and every path absolute. The
      playbooks pass this to the roles (serving settings, name, version) instead of reading C(model.yml) again.
  returned: always
  type: dict
  sample:
    name: credit-risk
    version: "1"
    source: {framework: sklearn, path: /srv/models/credit-risk/model.joblib, factory: null}
    serving:
      batching: {max_batch: 64, max_queue_delay_us: 2000, max_queue_size: 1024}
      instances: 1
      resources: {gpus: 0, memory: 1Gi, cpu: null}
      providers: [cpu]
name:
  description: Model name from the spec.
  returned: always
  type: str
  sample: credit-risk
version:
  description: Model version from the spec.
  returned: always
  type: str
  sample: "1"
files:
  description: sha256 of each file of the artifact.
  returned: when the artifact exists after the run
  type: dict
  sample: {"model.onnx": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
parity:
  description: Parity figures per output (worst element, its index, both values, the tolerance).
  returned: when the artifact exists after the run
  type: dict
  sample: {"samples": 256, "outputs": {"probabilities": {"max_abs_diff": 8.6e-08, "worst_index": [3, 1]}}}
manifest:
  description: The full manifest of the artifact.
  returned: when the artifact exists after the run
  type: dict
timings:
  description: Seconds spent in each stage of the build.
  returned: always
  type: dict
  sample: {"convert": 1.28, "parity": 0.01}
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils.runtime import fail_with, import_runtime


def _path(text):
    import pathlib

    return pathlib.Path(os.path.abspath(text))


def _manifest_text(manifest):
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n" if manifest else ""


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            spec=dict(type="path", required=True),
            output_dir=dict(type="path", required=True),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    convert, errors, spec_module = import_runtime(module, "convert", "errors", "spec")
    params = module.params
    try:
        spec = spec_module.load_spec(params["spec"])
        result = convert.build_artifact(spec, _path(params["output_dir"]),
                                        force=params["force"], check_only=module.check_mode)
    except errors.ModelfleetError as exc:
        fail_with(module, exc, spec=params["spec"])

    output = dict(
        changed=result.changed,
        path=str(result.path),
        outcome=result.outcome,
        reason=result.reason,
        build_key=result.build_key,
        model=spec.model_dump(mode="json"),
        name=spec.name,
        version=spec.version,
        timings=result.timings,
    )
    if result.manifest is not None:
        output.update(manifest=result.manifest, files=result.manifest["files"], parity=result.manifest["parity"])
    if module._diff:
        header = "%s/manifest.json" % output["path"]
        after = _manifest_text(result.manifest) if result.manifest is not None else (
            "(would be built: build key %s)\n" % result.build_key)
        output["diff"] = dict(before=_manifest_text(result.previous), after=after,
                              before_header=header, after_header=header)
    module.exit_json(**output)


def main():
    run_module()


if __name__ == "__main__":
    main()
