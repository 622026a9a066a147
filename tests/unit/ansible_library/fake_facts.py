"""FAKE facts for the role decision tests: returns its `facts` argument as ansible_facts (a stand-in for
gathering facts on Ubuntu and RHEL hosts, which cannot run here)."""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
