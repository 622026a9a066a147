"""PENDING (not collected): a serving host stopped mid-rollout, then reconciled by the next run (issue 15).

Ran once in the fleet scenario (session 5): the rollout rolled back on the reachable host, but through the
canary_up gate ("canary 9 was down during the step on mft-serving-2"), not through the lost-host policy that
this test expects, and the message checks read stdout only (ansible-core 2.19 writes failures to stderr).
To adopt: decide which of the two should name the loss (the policy runs only once Ansible drops the host from
the play), then append this function to molecule/fleet/tests/test_fleet_faults.py, last (it stops a host).
"""

def test_a_serving_host_lost_mid_rollout(workdir: Path) -> None:  # noqa: F811
    lost, kept = SERVING_HOSTS[1], SERVING_HOSTS[0]
    stable = release(kept)["stable"]["version"]
    spec = _load_variants().make_variant("good", "9", workdir / "v9-good")
    # The clients of the router that stays up: none of their requests may fail.
    clients = _load("traffic").Traffic([ROUTERS[0]], clients=2, rate_per_client=20.0)
    clients.start()
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(
        run=playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", check=False)), daemon=True)
    runner.start()
    try:
        # Once the first step's weights are set (25% to canary 9), the host goes away.
        state_file = workdir / "rollouts" / f"{MODEL}.json"
        wait_until(lambda: state_file.exists() and json.loads(state_file.read_text()).get("canary") == "9"
                   and json.loads(state_file.read_text()).get("window_start"), 300, "the first step of canary 9")
        docker("stop", lost)
        runner.join(timeout=600)
        run = outcome["run"]
        # The policy: paused, rolled back on the reachable host, the run fails as a rollback does, naming the host.
        assert run.returncode in (2, 4), said_by(run)[-4000:]
        assert f"Lost mid-rollout, left as they were until the next deploy_model.yml or rollback_model.yml " \
               f"reconciles them: {lost}" in said_by(run), said_by(run)[-4000:]
        state = rollout_state(workdir)
        report_steps(state)
        assert state["phase"] == "rolled_back" and f"serving host {lost} lost mid-rollout" in state["last_reason"]
        assert release(kept)["stable"]["version"] == stable and release(kept)["canary"] is None
        assert not active(kept, "9")
        assert clients.failed() == 0, clients.failures[:20]
    finally:
        clients.stop()
        docker("start", lost, check=False)

    # Back: it still has the step's weights, canary 9 and a record naming it (what issue 15 saw).
    wait_until(lambda: docker("exec", lost, "systemctl", "is-active", "haproxy", check=False).stdout.strip()
               == "active", 120, f"HAProxy on {lost}")
    assert release(lost)["canary"]["version"] == "9"
    # The next deploy reconciles it first, then rolls canary 9 out on both hosts (a good version: promoted).
    again = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}")
    assert re.search(rf"{lost}: {MODEL} abort: the fleet's rollout of canary 9 ended rolled_back", said_by(again))
    for host in SERVING_HOSTS:
        record = release(host)
        assert record["stable"]["version"] == "9" and record["canary"] is None, (host, record)
        assert record["previous"]["version"] == stable
        assert not active(host, stable)
        slot = record["stable"]["slot"]
        assert router_weights(host)[slot] == 100, router_weights(host)
