"""One engine to devices: the plan from a recipe, the wire schema of the agent's answers, a session per device,
and the device pipeline (push, probe, build, evaluate, bench, smoke, gates, activate) with typed step results."""
