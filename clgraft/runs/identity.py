"""A run's identity: its configuration in the one form that tells two runs apart (options resolved through the
method registry), for the runner's config hash and for sweeps, claims and the leaderboard to find a run's record."""

from __future__ import annotations

from clgraft.config import HASHED_WHEN_SET, TEST_SUBSET, RunConfig


def identity(config: RunConfig, test_subset: str | None = TEST_SUBSET, revision: int | None = None) -> dict:
    """A run's configuration in the one form that tells two runs apart: the method's options with every default filled
    in, `freeze_embeddings` as resolved (given, or the method's default: the two are one configuration; present only
    when on), how a capped run's test examples were chosen (`test_subset`, only with `max_test`: None for records made
    before it was recorded, whose subset was random), and the options added after the first run records left out while
    at their defaults (HASHED_WHEN_SET), so that those records keep their identity, and the method's code revision
    (`Method.revision`; `revision` given: a record's, else today's code's) where above 1. The runner hashes it with the
    data and the model into the config hash; sweeps and claims compare it to find the run a configuration already has —
    exactly, never by a subset of the options."""
    from clgraft.methods import get_method, parse_options

    method = get_method(config.method)
    frozen = method.freezes_embeddings if config.freeze_embeddings is None else config.freeze_embeddings
    unset = {k for k, default in HASHED_WHEN_SET.items() if getattr(config, k) == default}
    options = parse_options(method, config.method_options)
    revision = method.revision(options) if revision is None else revision
    return {
        "config": config.model_dump(exclude={"method_options", "freeze_embeddings", *unset}),
        **({"freeze_embeddings": True} if frozen else {}),
        **({"test_subset": test_subset} if config.max_test is not None else {}),
        "method_options": options.model_dump(),
        **({"method_revision": revision} if revision > 1 else {}),
    }


def record_identity(record: dict) -> dict:
    """`identity` of the configuration a run record holds, with the test subset it records (records written before an
    option existed read as its default) and the method options as the run resolved them (`method.options`): a record
    that left an option to its default ran with the default of its day, which may not be today's (EWC's λ = 1e6
    before it became a grid chosen on dev), so `config.method_options` alone would pass it off as today's default
    configuration. A record written before a method's fix (no `method.revision`, or a lower one) keeps the revision
    it ran with. An edited config is a one-line error."""
    from pydantic import ValidationError

    from clgraft.errors import ClgraftError, validation_message

    config = record["config"]
    resolved = record.get("method", {}).get("options")
    try:
        return identity(
            RunConfig(
                **{**config, "method_options": config.get("method_options", {}) if resolved is None else resolved}
            ),
            record.get("test_subset"),
            record.get("method", {}).get("revision", 1),
        )
    except ValidationError as e:
        raise ClgraftError(validation_message("run record", e, within="config") + " (the record was edited)") from e
