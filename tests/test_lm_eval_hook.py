import logging

from pipeline.eval import lm_eval_hook as lm_eval_hook


def test_absent_package_is_one_line_and_a_skip(monkeypatch, caplog):
    monkeypatch.setattr(lm_eval_hook, "available", lambda: False)
    with caplog.at_level(logging.INFO, logger="hasat"):
        scores, note = lm_eval_hook.run_tasks(object(), object(), ["turkishmmlu"], batch_size=4)
    assert scores is None
    assert note == "lm-eval hook: the lm_eval package is not installed; skipping turkishmmlu"
    assert [r.getMessage() for r in caplog.records] == [
        "lm-eval hook: the lm_eval package is not installed; skipping turkishmmlu"]


def test_package_is_really_absent_here():
    # the hook is optional: the project's dependencies do not pull lm-eval in
    assert not lm_eval_hook.available()


def test_no_tasks_configured_runs_nothing():
    assert lm_eval_hook.run_tasks(object(), object(), [], batch_size=4)[0] is None


def test_numeric_scores_keep_metrics_and_drop_stderr():
    results = {"results": {"turkishmmlu_biology": {"alias": "biology", "acc,none": 0.31, "acc_stderr,none": 0.02,
                                                   "acc_norm,none": 0.33}}}
    assert lm_eval_hook.numeric_scores(results) == {"turkishmmlu_biology": {"acc": 0.31, "acc_norm": 0.33}}
