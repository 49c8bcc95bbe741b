"""TensorBoard's view of a `vqa paper` grid, read back with TensorBoard's own reader and HParams plugin:
one run per experiment, every scalar once per step after a resume, and the HParams table filled."""

import json

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

from vqa.cli import main

SMALL_MODEL = ("model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32")
HPARAMS = ["model", "loss", "debias", "soft_target", "source", "data", "seed", "lr", "batch_size", "epochs"]


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    """300 train / 100 val questions, 16-d features."""
    from vqa.synth.generate import generate

    root = tmp_path_factory.mktemp("micro")
    generate(root, seed=0, quiet=True, train_images=60, val_images=20, test_images=1, questions_per_image=5,
             grid_size=3, grid_dim=16, box_dim=16)  # fmt: skip
    return root


def paper(data, tmp_path, epochs):
    args = ["paper", "--config-dir", "configs/synthetic", "--models", "avg", "--losses", "hard_ce soft_ce",
            "--seeds", "1", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report"),
            "--epochs", str(epochs), "--", f"data.root={data}", "data.synth_preset=", "train.batch_size=32",
            "train.lr=3e-3", "train.log_every=2", *SMALL_MODEL]  # fmt: skip
    assert main(args) == 0


def reader(runs):
    mux = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(runs))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(runs))
    tb = base_plugin.TBContext(logdir=str(runs), multiplexer=mux, data_provider=provider)
    return mux, provider, backend_context.Context(tb)


def scalars(provider, run) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of one run, as the Scalars dashboard reads them (no downsampling)."""
    found = provider.read_scalars(context.RequestContext(), experiment_id="", plugin_name="scalars",
                                  downsample=10**6, run_tag_filter=provider_filter(run))  # fmt: skip
    return {tag: [(d.step, d.value) for d in data] for tag, data in found[run].items()}


def provider_filter(run):
    from tensorboard.data.provider import RunTagFilter

    return RunTagFilter(runs=[run])


def session_groups(backend) -> dict[str, tuple[dict, dict]]:
    """run -> (hparams, metrics by tag) as the HParams table lists them."""
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])  # fmt: skip
    response = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    out = {}
    for group in response.session_groups:
        (session,) = group.sessions
        hparams = {k: v.string_value or v.number_value for k, v in group.hparams.items()}
        out[session.name] = (hparams, {m.name.tag: m.value for m in session.metric_values})
    return out


def test_a_grid_is_one_tensorboard_run_per_experiment_with_its_hparams(micro_data, tmp_path):
    paper(micro_data, tmp_path, epochs=1)
    paper(micro_data, tmp_path, epochs=2)  # both runs resumed: train.epochs extended, events purged
    runs = tmp_path / "runs"
    names = ["avg_hard_ce_s0", "avg_soft_ce_s0"]
    mux, provider, backend = reader(runs)
    assert sorted(mux.Runs()) == names  # no steps/ sub-run
    for name in names:
        rows = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
        ends = [r["step"] for r in rows]
        assert ends == [ends[0], 2 * ends[0]]
        curves = scalars(provider, name)
        for tag in ("train/loss", "val/loss", "val/accuracy", "lr", "epoch", "best/accuracy", "best/epoch"):
            assert [s for s, _ in curves[tag]] == ends, (name, tag)  # once each, at the epoch's end
        assert [v for _, v in curves["val/loss"]] == pytest.approx([r["val/loss"] for r in rows])
        assert [v for _, v in curves["epoch"]] == [1, 2]
        steps = [s for s, _ in curves["train/loss_step"]]
        assert steps == list(range(2, ends[-1] + 1, 2))  # every log_every-th step once, across the resume

    experiment = get_experiment.Handler(context.RequestContext(), backend, "", api_pb2.GetExperimentRequest())
    experiment = experiment.run()
    assert sorted(h.name for h in experiment.hparam_infos) == sorted(HPARAMS)
    assert [(m.name.tag, m.display_name) for m in experiment.metric_infos] == [
        ("best/accuracy", "best accuracy"), ("best/epoch", "best epoch"), ("val/loss", "final val loss")
    ]  # fmt: skip
    table = session_groups(backend)
    assert sorted(table) == names
    for name in names:
        hparams, values = table[name]
        rows = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
        best = max(rows, key=lambda r: r["val/accuracy"])
        assert hparams == {
            "model": "avg", "loss": name[4:-3], "debias": "none", "soft_target": "human", "source": "vqa2",
            "data": str(micro_data), "seed": 0.0, "lr": 3e-3, "batch_size": 32.0, "epochs": 2.0,
        }  # fmt: skip
        assert values["best/accuracy"] == pytest.approx(best["val/accuracy"])
        assert values["best/epoch"] == best["epoch"]
        assert values["val/loss"] == pytest.approx(rows[-1]["val/loss"])
