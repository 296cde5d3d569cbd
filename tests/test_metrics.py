"""Q&A metrics against hand-computed values and an independent CIDEr-D implementation."""

import math
from collections import Counter

import pytest

from chorus_qa.metrics import (
    METEOR_UNAVAILABLE,
    METRIC_NAMES,
    caption_scores,
    exact_match,
    java_available,
    normalize_answer,
    number_to_words,
    refined_exact_match,
    score_predictions,
    simple_ptb_tokenize,
)

# ----------------------------------------------------------------------------- normalisation and EM


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The brown chair.", "brown chair"),
        ("a TV-stand", "tv stand"),
        ("An apple, the pear!", "apple pear"),
        ("2", "two"),
        ("There are 3 chairs", "there are three chairs"),
        ("23", "twenty three"),
        ("twenty-three", "twenty three"),
        ("none", "zero"),
        ("mat2", "mat"),
        ("to the letf", "to left"),
        ("It's at 3 o'clock", "its at three oclock"),
        ("  lots   of\tspace ", "lots of space"),
        ("theater", "theater"),  # articles only as whole words
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_number_to_words():
    assert [number_to_words(n) for n in (0, 7, 13, 20, 40, 99, 100)] == [
        "zero", "seven", "thirteen", "twenty", "forty", "ninety nine", "100"
    ]


def test_exact_match_is_plain_strip_lower():
    assert exact_match("  Brown Chair ", ["brown chair", "chair"])
    assert not exact_match("the brown chair", ["brown chair"])  # articles count in EM@1
    assert not exact_match("brown chair.", ["brown chair"])  # so does punctuation
    assert not exact_match("2", ["two"])
    assert not exact_match("x", [])


def test_refined_exact_match_rules():
    assert refined_exact_match("The brown chair.", ["brown chair"])  # articles + punctuation
    assert refined_exact_match("2", ["two"]) and refined_exact_match("two", ["2"])  # digits <-> words
    assert refined_exact_match("brown", ["brown wooden chair"])  # prediction inside an answer
    assert refined_exact_match("on the left side of the bed", ["left side"])  # answer inside prediction
    assert refined_exact_match("tvstand", ["tv stand"])  # spaces ignored for containment
    assert not refined_exact_match("red", ["brown chair", "blue"])
    assert not refined_exact_match("", ["brown chair"])  # empty never matches
    assert not refined_exact_match("the", ["the table"])  # normalises to empty
    assert not refined_exact_match("chair", [])


def test_simple_ptb_tokenize():
    assert simple_ptb_tokenize("It's the TV-stand, isn't it?") == "it 's the tv-stand is n't it"
    assert simple_ptb_tokenize("(left) side...") == "left side"


# ----------------------------------------------------------------------------- captioning scores by hand


def test_bleu1_of_a_known_pair():
    # hyp 5 tokens; clipped unigram matches the, cat, on, mat = 4 -> p1 = 4/5;
    # brevity penalty exp(1 - r/c) with r = 6, c = 5.
    s = caption_scores({"a": ["the cat is on the mat"]}, {"a": "the cat sat on mat"})
    assert s["BLEU-1"] == pytest.approx(100 * 0.8 * math.exp(1 - 6 / 5), rel=1e-6)
    assert s["METEOR"] is None  # no scorer passed


def test_bleu_perfect_match_is_100():
    s = caption_scores({"a": ["the cat sat on the mat"]}, {"a": "the cat sat on the mat"})
    for n in range(1, 5):
        assert s[f"BLEU-{n}"] == pytest.approx(100.0, rel=1e-6)


def test_rouge_l_by_hand():
    # LCS("a b c d", "a c e d f") = "a c d" -> 3; P = 3/4, R = 3/5, beta = 1.2
    p, r, beta = 3 / 4, 3 / 5, 1.2
    f = (1 + beta**2) * p * r / (r + beta**2 * p)
    s = caption_scores({"x": ["a c e d f"]}, {"x": "a b c d"})
    assert s["ROUGE-L"] == pytest.approx(100 * f, rel=1e-9)
    # Several references: best precision and best recall are combined (as in pycocoevalcap).
    s2 = caption_scores({"x": ["a c e d f", "zz"]}, {"x": "a b c d"})
    assert s2["ROUGE-L"] == pytest.approx(100 * f, rel=1e-9)


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def reference_cider_d(refs: dict, hyps: dict, sigma=6.0) -> float:
    """CIDEr-D from its definition (Vedantam et al. 2015; the variant in coco-caption):

    g_k(s) = tf_k(s) * log(|I| / max(1, df_k)),  df_k = #images whose references contain n-gram k
    CIDEr-D_n(c, S) = 10/m * sum_j  exp(-(l(c)-l(s_j))^2 / (2 sigma^2)) *
                      sum_k min(g_k(c), g_k(s_j)) g_k(s_j) / (|g(c)| |g(s_j)|)
    CIDEr-D = mean over n = 1..4;  corpus score = mean over images.
    """
    n_images = len(refs)
    df = Counter()
    for sentences in refs.values():
        df.update({g for s in sentences for n in range(1, 5) for g in _ngrams(s.split(), n)})

    def vec(tokens, n):
        return {g: c * (math.log(n_images) - math.log(max(1.0, df[g]))) for g, c in _ngrams(tokens, n).items()}

    total = 0.0
    for key, sentences in refs.items():
        hyp = hyps[key].split()
        per_n = []
        for n in range(1, 5):
            gh = vec(hyp, n)
            score = 0.0
            for ref in sentences:
                r = ref.split()
                gr = vec(r, n)
                norm = math.sqrt(sum(v * v for v in gh.values())) * math.sqrt(sum(v * v for v in gr.values()))
                dot = sum(min(v, gr.get(g, 0.0)) * gr.get(g, 0.0) for g, v in gh.items())
                penalty = math.exp(-((len(hyp) - len(r)) ** 2) / (2 * sigma**2))
                score += penalty * (dot / norm if norm > 0 else 0.0)
            per_n.append(10.0 * score / len(sentences))
        total += sum(per_n) / 4
    return total / n_images


def test_cider_d_matches_its_definition():
    refs = {
        "1": ["brown wooden chair", "wooden chair"],
        "2": ["on the left of the bed", "left of bed", "left side"],
        "3": ["two", "two chairs"],
        "4": ["white table near the window", "white table"],
    }
    hyps = {"1": "wooden chair", "2": "left of the bed", "3": "three chairs", "4": "black table near door"}
    expected = reference_cider_d(refs, hyps)
    assert expected > 0.5  # a non-trivial corpus
    assert caption_scores(refs, hyps)["CIDEr"] == pytest.approx(100 * expected, rel=1e-9)


# ----------------------------------------------------------------------------- score_predictions

PREDS = {"q1": "Brown chair", "q2": "2", "q3": "on the left side", "q4": "", "q5": "table", "extra": "x"}
GTS = {"q1": ["brown chair"], "q2": ["two"], "q3": ["left"], "q4": ["white"], "q5": ["desk"], "q6": ["lamp"], "q7": []}
TYPES = {"q1": "what color", "q2": "how many", "q3": "where", "q4": "what color"}


def test_score_predictions_counts_and_per_type_without_java():
    r = score_predictions(PREDS, GTS, TYPES, use_java=False)
    o = r["overall"]
    assert set(METRIC_NAMES) <= set(o)
    assert (r["n_scored"], r["n_without_answers"], r["n_missing_predictions"], r["n_extra_predictions"]) == (6, 1, 1, 1)
    # EM@1: q1 only; refined EM: q1, q2 (digits), q3 (substring) -> out of 6 (q6 has no prediction)
    assert o["EM@1"] == pytest.approx(100 / 6)
    assert o["refined_EM"] == pytest.approx(300 / 6)
    assert o["n"] == 6
    # METEOR without Java: reported unavailable, not zero
    assert o["METEOR"] is None and r["meteor"] == METEOR_UNAVAILABLE
    assert "fallback" in r["tokenizer"]
    pt = r["per_type"]
    assert set(pt) == {"what color", "how many", "where", "unknown"}
    assert pt["what color"]["n"] == 2 and pt["what color"]["EM@1"] == 50.0
    assert pt["how many"]["refined_EM"] == 100.0 and pt["how many"]["EM@1"] == 0.0
    # per-type means of per-question scores recombine into the overall value
    for metric in ("EM@1", "refined_EM", "CIDEr", "ROUGE-L"):
        weighted = sum(pt[t][metric] * pt[t]["n"] for t in pt) / o["n"]
        assert weighted == pytest.approx(o[metric], rel=1e-9, abs=1e-9)


def test_score_predictions_empty_answers_only():
    r = score_predictions({"a": "x"}, {"a": []}, use_java=False)
    assert r["n_scored"] == 0 and r["overall"]["EM@1"] is None and r["per_type"] == {}


@pytest.mark.skipif(not java_available(), reason="needs a java runtime for PTBTokenizer and METEOR")
def test_score_predictions_with_java_has_meteor():
    r = score_predictions(PREDS, GTS, TYPES, use_java=True)
    o = r["overall"]
    assert r["meteor"].startswith("pycocoevalcap METEOR")
    assert 0.0 < o["METEOR"] < 100.0
    assert r["per_type"]["what color"]["METEOR"] is not None
    # The normalised texts carry no punctuation, so PTB and the fallback tokeniser agree on n-gram scores.
    fallback = score_predictions(PREDS, GTS, TYPES, use_java=False)["overall"]
    for metric in ("EM@1", "refined_EM", "BLEU-1", "BLEU-4", "CIDEr", "ROUGE-L"):
        assert o[metric] == pytest.approx(fallback[metric], rel=1e-9, abs=1e-12)


@pytest.mark.skipif(not java_available(), reason="needs a java runtime for METEOR")
def test_cached_meteor_equals_pycocoevalcap_meteor():
    from chorus_qa.metrics import CachedMeteor

    gts = {"a": ["brown chair", "a chair"], "b": ["two"], "c": ["on the left of the bed"]}
    res = {"a": ["brown chair"], "b": ["three"], "c": ["left of bed"]}
    cached = CachedMeteor()
    plain = cached._meteor  # pycocoevalcap's own Meteor.compute_score on the same Java process (one JVM start)
    assert cached.compute_score(gts, res) == plain.compute_score(gts, res)
    subset = ["c", "a"]  # a second request reuses the cached statistics
    sub_g, sub_r = {k: gts[k] for k in subset}, {k: res[k] for k in subset}
    assert cached.compute_score(sub_g, sub_r) == plain.compute_score(sub_g, sub_r)
