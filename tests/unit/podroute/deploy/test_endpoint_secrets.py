"""Which provider secrets belong to an endpoint: exactly the secret env values stored for it."""

from __future__ import annotations

from podroute.deploy.endpoint_secrets import SecretCleanup, owned_secrets
from podroute.deploy.model import ActualEndpoint, ReleaseInfo, Target, env_secret_name, target_labels

TARGET = Target("shop", "production", "cpu", "cpu")
VERSION = "0123456789ab"


def _endpoint(target: Target, *release_keys: list[str], env_values: bool = False) -> ActualEndpoint:
    releases = [
        ReleaseInfo(
            number=index + 1,
            build="b",
            config={"env": dict.fromkeys(keys, "x")} if env_values else {"env_keys": keys},
        )
        for index, keys in enumerate(release_keys)
    ]
    return ActualEndpoint(
        id="ep", name="n", url="u", labels=target_labels(target), release=releases[-1], releases=releases
    )


def test_only_names_made_for_the_endpoints_own_env_variables_are_its_own() -> None:
    endpoint = _endpoint(TARGET, ["TOKEN"], ["TOKEN", "DB_PASSWORD"])
    ours = [env_secret_name(TARGET, "TOKEN", VERSION), env_secret_name(TARGET, "DB_PASSWORD", "ffffffffffff")]
    older = env_secret_name(TARGET, "TOKEN", "aaaaaaaaaaaa")  # a value an earlier release held
    bigger = Target("shop", "production", "cpu", "cpu-big")  # its name starts with ours
    theirs = [
        "hf-token",  # a user's own secret
        env_secret_name(TARGET, "UNSET", VERSION),  # our name pattern, but no release has UNSET
        env_secret_name(bigger, "TOKEN", VERSION),
        env_secret_name(Target("shop", "staging", "cpu", "cpu"), "TOKEN", VERSION),
        env_secret_name(TARGET, "TOKEN", VERSION)[:-1],  # no whole version at the end
    ]
    assert owned_secrets(endpoint, [*theirs, *ours, older]) == sorted([*ours, older])
    assert owned_secrets(_endpoint(bigger, ["TOKEN"]), [*theirs, *ours]) == [theirs[2]]


def test_a_release_that_kept_its_env_and_a_name_cut_to_fit_are_recognised() -> None:
    long_target = Target("shop", "production", "cpu", "cpu")
    long_key = "K" * 120
    cut = env_secret_name(long_target, long_key, VERSION)
    assert len(cut) <= 128 and long_key not in cut
    endpoint = _endpoint(long_target, [long_key], env_values=True)
    assert owned_secrets(endpoint, [cut, "other"]) == [cut]


def test_an_endpoint_without_the_marker_owns_nothing() -> None:
    unmarked = ActualEndpoint(id="ep", name="n", url="u", releases=[ReleaseInfo(1, "b", {"env_keys": ["T"]})])
    assert owned_secrets(unmarked, [env_secret_name(TARGET, "T", VERSION)]) == []


def test_the_summary_says_what_was_removed_and_what_to_do_with_what_was_not() -> None:
    assert SecretCleanup().after("endpoint ep deleted") == "endpoint ep deleted"
    done = SecretCleanup(removed=["a", "b"], left={"c": "RunPod answered 500"})
    line = done.after("endpoint ep deleted")
    assert line.startswith("endpoint ep deleted; removed 2 provider secret(s)")
    assert "could not remove c; delete them with `podroute secret delete ENV NAME`" in line
    assert "not looked for (timed out)" in SecretCleanup(unlisted="timed out").summary()
