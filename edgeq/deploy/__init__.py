"""One-device deploy and smoke: plan from a recipe, then push, build, evaluate, bench, gate, activate."""
