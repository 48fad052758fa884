"""Progress of long work: the line format and cadence off a terminal (a fake clock, then a real
tiny training run and a real generation run with their stderr captured), and a bar on a terminal."""

import io
import re

from pipeline.eval.generation import generate
from pipeline.progress import Progress, duration
from pipeline.train.modeling import load_saved
from pipeline.train.trainer import sft_data, train
from tests.test_training import rows, tiny_train_cfg  # noqa: F401  (rows is a fixture)

LINE = re.compile(r"^(?P<desc>[\w :]+): (?P<unit>\w+) (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\), "
                  r"(?P<rate>[\d.]+ \w+/s|[\d.]+ s/\w+), elapsed (?P<elapsed>[^,\s]+), "
                  r"ETA (?P<eta>[^,\s]+)(?P<extra>.*)$")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def progress_lines(text: str, desc: str) -> list[re.Match]:
    return [m for line in text.splitlines() if (m := LINE.match(line)) and m["desc"] == desc]


def test_lines_every_n_steps_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = Progress(20, "work", unit="step", stream=out, mode="lines", every_steps=5, every_seconds=1e9,
                        clock=clock)
    for _ in range(20):
        clock.now += 0.5
        progress.update(1, loss=2.0)
    progress.close()
    lines = progress_lines(out.getvalue(), "work")
    assert [int(m["n"]) for m in lines] == [5, 10, 15, 20]
    assert lines[0]["rate"] == "2.00 steps/s" and lines[0]["eta"] == "8s" and lines[0]["elapsed"] == "2s"
    assert lines[0]["extra"] == ", loss 2" and lines[-1]["eta"] == "0s" and lines[-1]["pct"] == "100"
    assert len(out.getvalue().splitlines()) == 4  # close() after the last line adds nothing


def test_lines_every_n_seconds_and_a_last_line_at_close():
    clock, out = Clock(), io.StringIO()
    progress = Progress(1000, "slow", unit="answer", stream=out, mode="lines", every_steps=10_000, every_seconds=30,
                        clock=clock)
    for _ in range(7):
        clock.now += 20.0  # 3 units per 20 s: a line every other update
        progress.update(3)
    progress.close()  # stopped early (an error, early stopping): where it stopped is still said
    lines = progress_lines(out.getvalue(), "slow")
    assert [int(m["n"]) for m in lines] == [6, 12, 18, 21]
    assert lines[0]["rate"] == "0.15 answers/s" and lines[0]["eta"] == duration(994 / 0.15) == "1h50m"


def test_slow_work_reads_seconds_per_unit_and_resumes_count_from_initial():
    clock, out = Clock(), io.StringIO()
    progress = Progress(10, "train", initial=4, stream=out, mode="lines", every_steps=1, clock=clock)
    clock.now += 40.0
    progress.advance_to(5)
    assert progress_lines(out.getvalue(), "train")[0]["rate"] == "40.0 s/step"  # steps 1-4 were another run's


def test_a_terminal_gets_a_bar_and_off_or_no_desc_is_silent(monkeypatch):
    out = io.StringIO()
    with Progress(10, "bar test", stream=out, mode="bar") as progress:
        progress.update(3, loss=1.5)
    assert "bar test" in out.getvalue() and "3/10" in out.getvalue() and "\r" in out.getvalue()
    monkeypatch.setenv("HASAT_PROGRESS", "off")
    quiet = io.StringIO()
    with Progress(10, "quiet", stream=quiet) as progress:
        progress.update(10)
    with Progress(10, None, stream=quiet, mode="lines") as progress:
        progress.update(10)
    assert quiet.getvalue() == ""


def test_training_reports_position_rate_eta_and_loss_off_a_terminal(tiny_model_dir, rows, tmp_path,  # noqa: F811
                                                                    capfd, monkeypatch):
    monkeypatch.setenv("HASAT_PROGRESS", "lines")
    monkeypatch.setenv("HASAT_PROGRESS_STEPS", "2")
    tokenizer, model = load_saved(tiny_model_dir)
    cfg = tiny_train_cfg(max_steps=6, evals_per_epoch=2)
    train(model, sft_data(tokenizer, rows * 4, rows, cfg), cfg, tmp_path / "ck")
    captured = capfd.readouterr()
    lines = progress_lines(captured.err, "finetune")
    assert [(int(m["n"]), int(m["total"])) for m in lines] == [(2, 6), (4, 6), (6, 6)]
    assert all(re.search(r", loss \d+(\.\d+)?, lr [\d.e-]+$", m["extra"]) for m in lines), lines[0].string
    assert re.search(r"^finetune: step \d/6: val loss \d+\.\d{4} \(best \d+\.\d{4}\)$", captured.err, re.M)
    assert "{'loss'" not in captured.out + captured.err  # HF's PrinterCallback dicts are gone


def test_generation_reports_answers_off_a_terminal(tiny_model_dir, capfd, monkeypatch):
    monkeypatch.setenv("HASAT_PROGRESS", "lines")
    monkeypatch.setenv("HASAT_PROGRESS_STEPS", "2")
    tokenizer, model = load_saved(tiny_model_dir)
    prompts = [tokenizer(text)["input_ids"] for text in ("Buğday", "Arpa ne zaman", "Toprak", "Su", "Gübre")]
    generate(model, tokenizer, prompts, max_new_tokens=3, batch_size=2, desc="evaluate: base: generate")
    lines = progress_lines(capfd.readouterr().err, "evaluate: base: generate")
    assert [int(m["n"]) for m in lines] == [2, 4, 5] and lines[0]["unit"] == "answer"
    assert all(re.fullmatch(r", new_tokens_per_answer \d+(\.\d)?", m["extra"]) for m in lines)
