"""MT-Bench: reading FastChat's files, the single-answer protocol, and judging over real HTTP on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import Counter
from pathlib import Path

import pytest
from fixtures_hf import build_mtbench
from scripted_openai_server import Reply, ScriptedOpenAIServer

from discovery.config import JudgeConfig
from discovery.mtbench import data as mt_data
from discovery.mtbench.cache import JudgmentCache
from discovery.mtbench.judge import Judge, JudgeError
from discovery.mtbench.protocol import build_request, parse_rating, prompt_name
from discovery.mtbench.score import judge_answers


def rating_of(body: dict) -> int:
    """The scripted judge's deterministic rating of a request (from its user prompt)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return 1 + sum(user.encode()) % 10


def rate(body: dict, delay: float = 0.0) -> Reply:
    return Reply(f"Explanation. Rating: [[{rating_of(body)}]]", delay=delay)


def no_rating(body: dict) -> Reply:
    return Reply("A fine answer, but I give no number.")


RATE_LIMITED = Reply(status=429, headers={"retry-after-ms": "10"})


@pytest.fixture()
def mini(tmp_path) -> mt_data.MTBenchData:
    return mt_data.load(str(build_mtbench(tmp_path / "mt")))


ANSWERS = {81: ("A poem about the sun.", "Sun."), 111: ("four", "five")}


def judge_for(server, tmp_path, **kw) -> Judge:
    config = JudgeConfig(model="scripted-judge", base_url=server.base_url, **{"max_retries": 2, "timeout": 5.0, **kw})
    return Judge(config, JudgmentCache(tmp_path / "cache" / "judgments.jsonl"))


# ---------------------------------------------------------------- FastChat's published files


def test_reads_the_official_files(mtbench_dir):
    data = mt_data.load(str(mtbench_dir))
    assert len(data.questions) == 80
    assert Counter(q.category for q in data.questions) == {c: 10 for c in mt_data.CATEGORIES}
    assert all(len(q.turns) == 2 for q in data.questions)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(
        data.judge_prompts)
    assert all(data.judge_prompts[n].output_format == "[[rating]]" for n in data.judge_prompts if n.startswith("single"))
    needs_ref = [q for q in data.questions if q.needs_reference]
    assert len(needs_ref) == 30 and all(q.question_id in data.references for q in needs_ref)
    for q in data.questions:  # every judge prompt renders, with the reference where FastChat uses one
        for turn in (1, 2):
            request = build_request(data, q, ("ANSWER_ONE", "ANSWER_TWO"), turn)
            assert "ANSWER_ONE" in request.user_prompt
            assert ("ANSWER_TWO" in request.user_prompt) == (turn == 2)
            if q.needs_reference:
                assert data.references[q.question_id][0][:40] in request.user_prompt


def test_downloads_once_from_a_url_and_caches(tmp_path):
    build_mtbench(tmp_path / "site", fastchat_layout=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        data = mt_data.load(url, cache_dir=tmp_path / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [q.question_id for q in data.questions] == [81, 111]
    again = mt_data.load(url, cache_dir=tmp_path / "cache")  # the server is gone: served from the cache
    assert again.references == data.references


def test_unreachable_source_is_one_clear_error(tmp_path):
    with pytest.raises(mt_data.DiscoveryError, match="could not download MT-Bench file"):
        mt_data.load("http://127.0.0.1:9/nothing", cache_dir=tmp_path)
    with pytest.raises(mt_data.DiscoveryError, match="not found"):
        mt_data.load(str(tmp_path / "missing"))


# ---------------------------------------------------------------- FastChat's single-answer protocol


def test_prompt_choice_and_reference(mini):
    writing, math = mini.questions
    assert [prompt_name(writing, t) for t in (1, 2)] == ["single-v1", "single-v1-multi-turn"]
    assert [prompt_name(math, t) for t in (1, 2)] == ["single-math-v1", "single-math-v1-multi-turn"]
    assert writing.temperature == 0.7 and math.temperature == 0.0
    turn2 = build_request(mini, math, ("four", "five"), 2)
    assert "Reference answer:\nfour" in turn2.user_prompt and "Reference answer:\nfive" in turn2.user_prompt
    assert turn2.system_prompt.startswith("You are a judge (single-math-v1-multi-turn)")


@pytest.mark.parametrize("text, rating", [
    ("Rating: [[8]]", 8.0), ("[[7.5]] because", 7.5), ("Rating: [6]", 6.0), ("I rate it 9/10", None),
    ("[[x]] and [[3]]", 3.0),
])
def test_rating_parse_with_fastchat_fallback(text, rating):
    assert parse_rating(text) == rating


# ---------------------------------------------------------------- judging over HTTP


def test_scores_retries_and_never_pays_twice(mini, tmp_path):
    script = [RATE_LIMITED, RATE_LIMITED, no_rating]
    server = ScriptedOpenAIServer(script, default=rate).start()
    judge = judge_for(server, tmp_path, concurrency=1, prices={"scripted-judge": [10.0, 30.0]})
    score, judgments = judge_answers(mini, ANSWERS, judge)
    requests = list(server.chat_requests)
    assert len(requests) == 2 + 4  # two 429s retried, then four judgments
    assert all(r["temperature"] == 0 and r["model"] == "scripted-judge" for r in requests)
    ratings = {(j.question_id, j.turn): j.rating for j in judgments}
    assert list(ratings.values()).count(None) == 1  # the unparseable judgment is missing, not zero
    assert score.rated == 3 and score.missing == 1
    given = [j.rating for j in judgments if j.rating is not None]
    assert score.overall == pytest.approx(sum(given) / 3)
    t1 = [j.rating for j in judgments if j.turn == 1 and j.rating is not None]
    assert score.turn1 == pytest.approx(sum(t1) / len(t1))
    assert score.prompt_tokens == 4 * 100 and score.completion_tokens > 0
    assert score.cost_usd == pytest.approx((score.prompt_tokens * 10 + score.completion_tokens * 30) / 1e6)

    try:  # re-scoring the same answers with the same judge (a fresh cache object): all from the cache
        again, _ = judge_answers(mini, ANSWERS, judge_for(server, tmp_path))
        assert len(server.chat_requests) == 6
        assert again.cache_hits == 4 and again.cost_usd == 0 and again.overall == score.overall
        changed = {**ANSWERS, 81: ("A different poem.", "Sun.")}  # a changed answer is judged again (both turns)
        judge_answers(mini, changed, judge_for(server, tmp_path))
        assert len(server.chat_requests) == 6 + 2
    finally:
        server.stop()


def test_a_timeout_is_retried(mini, tmp_path):
    with ScriptedOpenAIServer([lambda b: rate(b, delay=3.0)], default=rate) as server:
        score, _ = judge_answers(mini, {81: ANSWERS[81]}, judge_for(server, tmp_path, timeout=1.0, concurrency=1))
        assert len(server.chat_requests) == 3  # the slow one, then the retry and turn 2
    assert score.rated == 2


def test_unreachable_judge_keeps_judgments_made(mini, tmp_path):
    failing = Reply(status=503)
    with ScriptedOpenAIServer([rate, rate], default=failing) as server:
        with pytest.raises(JudgeError, match=r"2 of 4 judgments are kept"):
            judge_answers(mini, ANSWERS, judge_for(server, tmp_path, concurrency=1, max_retries=1))
        asked = len(server.chat_requests)
        server.default = rate  # the judge is back: only the two missing judgments are asked
        score, _ = judge_answers(mini, ANSWERS, judge_for(server, tmp_path))
        assert len(server.chat_requests) == asked + 2
    assert score.rated == 4 and score.cache_hits == 2

    closed = JudgeConfig(model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2.0)
    with pytest.raises(JudgeError, match="APIConnectionError"):
        judge_answers(mini, {81: ("new answer", "x")}, Judge(closed, JudgmentCache(tmp_path / "c2.jsonl")))


def test_missing_api_key_is_a_clear_error(mini, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = Judge(JudgeConfig(), JudgmentCache(tmp_path / "c.jsonl"))
    with pytest.raises(JudgeError, match="no API key for the judge"):
        judge_answers(mini, ANSWERS, judge)


def test_cache_survives_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with ScriptedOpenAIServer(default=rate) as server:
        judge = Judge(JudgeConfig(model="m", base_url=server.base_url), JudgmentCache(path))
        data = mt_data.load(str(build_mtbench(tmp_path / "mt")))
        judge_answers(data, ANSWERS, judge)
    Path(path).write_text(path.read_text() + '{"key": "trunc')
    assert len(JudgmentCache(path)) == 4


# ---------------------------------------------------------------- the command


def test_mtbench_command_scores_a_saved_model(tmp_path):
    from conftest import run_cli
    from fixtures_hf import build_model

    model = build_model(tmp_path / "model")
    source = build_mtbench(tmp_path / "mt")
    common = ["--set", f"eval.mtbench_source={source}", "--set", "eval.mtbench_max_new_tokens=5",
              "--set", f"eval.judge.cache_dir={tmp_path / 'judge'}", "--questions", "1", "--judge-model", "sj"]
    with ScriptedOpenAIServer(default=rate) as server:
        proc = run_cli("mtbench", str(model), "--judge-base-url", server.base_url, "--json", *common)
        n_requests = len(server.chat_requests)
    assert proc.returncode == 0, proc.stderr
    import json

    score = json.loads(proc.stdout)
    assert score["questions"] == 1 and score["rated"] == 2 and n_requests == 2 and score["judge_model"] == "sj"
    saved = json.loads((model / "mtbench" / "score.json").read_text())
    assert saved["overall"] == score["overall"]

    proc = run_cli("mtbench", str(model), "--judge-base-url", "http://127.0.0.1:9/v1", *common,
                   "--set", "eval.judge.max_retries=0", "--questions", "2")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("discovery: error: judge sj")
    # another endpoint is another judge: none of the first judge's ratings count for it
    assert "0 of 4 judgments are kept" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- judge identity, generation errors, vLLM


def test_judge_cache_is_keyed_by_the_judge_endpoint_too(mini, tmp_path):
    """Two servers answering to the same model name are two judges: neither is served the other's ratings."""
    with ScriptedOpenAIServer(default=rate) as first, ScriptedOpenAIServer(default=rate) as second:
        judge_answers(mini, ANSWERS, judge_for(first, tmp_path))
        _, judgments = judge_answers(mini, ANSWERS, judge_for(second, tmp_path))  # same cache file
        again, _ = judge_answers(mini, ANSWERS, judge_for(second, tmp_path))
        assert len(first.chat_requests) == 4 and len(second.chat_requests) == 4
    assert again.cache_hits == 4
    assert {j.judge_base_url for j in judgments} == {second.base_url.rstrip("/")}


class _FailingGenerate:
    """A real tiny model whose generate raises on the first call, as CUDA OOM does."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model.generate(*args, **kwargs)


def test_a_generation_error_is_an_error_answer_not_a_crash(mini, tmp_path):
    from fixtures_hf import build_model

    from discovery.config import from_dict, with_values
    from discovery.inner_loop.hf_data import load_policy
    from discovery.mtbench import answers as answers_mod
    from discovery.mtbench.score import score

    model, tok = load_policy(str(build_model(tmp_path / "model")))
    config = from_dict({"eval": {"mtbench_source": str(build_mtbench(tmp_path / "mt2")), "mtbench_max_new_tokens": 4,
                                 "mtbench_backend": "hf",
                                 "judge": {"model": "sj", "cache_dir": str(tmp_path / "j"), "max_retries": 1}}})
    with ScriptedOpenAIServer(default=rate) as server:
        config = with_values(config, {"eval.judge.base_url": server.base_url})
        result = score(config, _FailingGenerate(model), tok, tmp_path / "out")
        judged = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in server.chat_requests]
    saved = answers_mod.load_saved(tmp_path / "out" / "answers.jsonl", {})
    assert saved[81][0] == answers_mod.ERROR_ANSWER and saved[81][1] != answers_mod.ERROR_ANSWER
    assert result.errors == 1 and result.rated == 4  # judged like any answer, as FastChat does
    assert sum(answers_mod.ERROR_ANSWER in text for text in judged) >= 2  # turn 1, and turn 2's history


def test_mtbench_command_with_vllm_leaves_the_gpu_to_vllm(tmp_path, monkeypatch):
    """With the vLLM backend the command loads no HF model (vLLM loads its own) and passes the memory share."""
    import argparse

    from fixtures_hf import build_model

    from discovery.commands import mtbench as command
    from discovery.mtbench import answers as answers_mod

    model = build_model(tmp_path / "model")
    seen = {}

    def fake_vllm(path, questions, max_new_tokens, seed, gpu_memory_utilization, revision):  # vLLM: no GPU here
        seen.update(path=path, gpu=gpu_memory_utilization)
        return {q.question_id: ("an answer", "another") for q in questions}

    monkeypatch.setattr(answers_mod, "vllm_available", lambda: True)
    monkeypatch.setattr(answers_mod, "generate_vllm", fake_vllm)
    monkeypatch.setattr(command, "_load", lambda *a: pytest.fail("the HF model was loaded before vLLM"))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    with ScriptedOpenAIServer(default=rate) as server:
        args = parser.parse_args(["mtbench", str(model), "--judge-base-url", server.base_url, "--json",
                                  "--set", f"eval.mtbench_source={build_mtbench(tmp_path / 'mt')}",
                                  "--set", "eval.mtbench_backend=vllm", "--set", "eval.vllm_gpu_memory_utilization=0.4",
                                  "--set", f"eval.judge.cache_dir={tmp_path / 'j'}"])
        assert args.func(args) == 0
    assert seen == {"path": str(model), "gpu": 0.4}
