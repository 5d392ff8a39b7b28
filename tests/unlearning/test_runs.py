"""A training run's identity: what it holds, and settings added later that keep earlier runs' names."""

from unlearning.runs import identity_hash, training_identity


def test_settings_at_their_old_behaviour_keep_the_identity():
    before = {"lr": 1e-4, "epochs": 3, "method": {"name": "ga"}}
    with_defaults = {**before, "shuffle": True, "decay_exempt": "1d"}
    assert identity_hash(training_identity(with_defaults, "base")) == identity_hash(training_identity(before, "base"))
    for changed in ({"shuffle": False}, {"decay_exempt": "bias"}):
        other = training_identity({**with_defaults, **changed}, "base")
        assert identity_hash(other) != identity_hash(training_identity(before, "base"))
    assert "compat" not in training_identity({**before, "compat": "official"}, "base")  # acts through the values
