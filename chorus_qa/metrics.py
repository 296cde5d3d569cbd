"""Q&A metrics: EM@1, refined EM (LEO / Chat-Scene normalisation) and captioning scores.

Conventions (as in LEO and Chat-Scene, which the 3D-QA literature reports):

* EM@1: the prediction, stripped and lower-cased, equals one of the answers
  (stripped and lower-cased).
* refined EM: prediction and answers are passed through `normalize_answer`;
  a match is equality, or (spaces removed) the prediction contained in an
  answer or an answer contained in the prediction. An empty normalised
  prediction never matches (it would be a substring of everything).
* BLEU-1..4, CIDEr (pycocoevalcap's CIDEr-D: sigma 6, clipped counts, x10),
  ROUGE-L (beta 1.2) and METEOR 1.5 from ``pycocoevalcap``, on normalised
  texts, tokenised with Stanford's PTBTokenizer. PTBTokenizer and METEOR need a
  ``java`` runtime. Without one the texts are tokenised by
  `simple_ptb_tokenize` (a pure-Python approximation: lower case, clitics split,
  punctuation tokens dropped) and METEOR is reported as ``None`` with the
  status ``"unavailable: no java runtime"``: never as zero.

Per question type, EM, refined EM, ROUGE-L and CIDEr are means of per-question
scores (CIDEr's document frequencies always come from the whole split, so a
type's CIDEr does not depend on how many questions share its type); BLEU and
METEOR are corpus-level and recomputed on the type's questions.

All scores are reported in percent (x100), as papers print them.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from typing import Mapping, Sequence

METRIC_NAMES = ("EM@1", "refined_EM", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "ROUGE-L", "METEOR")
METEOR_UNAVAILABLE = "unavailable: no java runtime"

# Frequent misspellings in ScanQA / SQA3D answers (the same list LEO and Chat-Scene correct).
_TYPOS = {
    "letf": "left",
    "rigth": "right",
    "rght": "right",
    "tehre": "there",
    "behine": "behind",
    "chai": "chair",
    "wasing": "washing",
    "waslked": "walked",
    "backwards": "backward",
}
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ARTICLES = {"a", "an", "the"}


def number_to_words(n: int) -> str:
    """0..99 as English words, e.g. 2 -> "two", 23 -> "twenty three"; larger numbers stay digits."""
    if n < 20:
        return _UNITS[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + ("" if unit == 0 else " " + _UNITS[unit])
    return str(n)


def normalize_answer(text: str) -> str:
    """Normalise an answer for refined EM and captioning metrics.

    Steps: lower case; "o'clock" kept as one word; apostrophes dropped and other
    punctuation turned into spaces (hyphens too: "twenty-three" -> "twenty
    three"); common typos fixed; integers 0..99 written as words and "none" as
    "zero" (so "2" and "two" agree); digits glued to a word dropped ("mat2" ->
    "mat"); the articles a/an/the removed; spaces collapsed.
    """
    s = text.lower().replace("\u2019", "'").replace("\u00e7", "c")
    s = re.sub(r"\bo'\s*clock\b", "oclock", s)
    s = s.replace("'", "")
    s = re.sub(r"[^a-z0-9\s]", " ", s)
    words = []
    for w in s.split():
        w = _TYPOS.get(w, w)
        if w.isdigit():
            w = number_to_words(int(w))
        elif w == "none":
            w = "zero"
        else:
            w = re.sub(r"^([a-z]+)[0-9]+$", r"\1", w)
        words.extend(w.split())
    return " ".join(w for w in words if w not in _ARTICLES)


def exact_match(pred: str, answers: Sequence[str]) -> bool:
    """EM@1: the stripped, lower-cased prediction equals one of the stripped, lower-cased answers."""
    p = pred.strip().lower()
    return any(p == a.strip().lower() for a in answers)


def refined_exact_match(pred: str, answers: Sequence[str]) -> bool:
    """Refined EM: normalised equality, or one normalised text contains the other (spaces ignored)."""
    p = normalize_answer(pred)
    if not p:
        return False
    p_compact = p.replace(" ", "")
    for answer in answers:
        a = normalize_answer(answer)
        if not a:
            continue
        a_compact = a.replace(" ", "")
        if p == a or p_compact in a_compact or a_compact in p_compact:
            return True
    return False


# ----------------------------------------------------------------------------- tokenisation

_CLITICS = {"'s", "'re", "'ve", "'ll", "'d", "'m"}
# The tokens pycocoevalcap drops after PTB tokenisation; brackets and double quotes are in it
# because PTB rewrites them as -LRB-/-RRB-/-LCB-/-RCB- and ``/''.
_PTB_PUNCTUATION = {"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_PTB_PUNCTUATION |= {"(", ")", "[", "]", "{", "}", '"'}


def simple_ptb_tokenize(text: str) -> str:
    """Pure-Python stand-in for pycocoevalcap's PTBTokenizer (used only without Java).

    Lower-cases, splits English clitics ("it's" -> "it 's", "don't" -> "do n't"),
    separates punctuation and brackets from words and drops the punctuation
    tokens PTBTokenizer's wrapper removes. Hyphenated words stay whole, as in PTB.
    """
    s = text.lower().replace("\n", " ")
    s = re.sub(r"(\w)n't\b", r"\1 n't", s)
    s = re.sub(r"(\w)'(s|re|ve|ll|d|m)\b", r"\1 '\2", s)
    s = re.sub(r"([.,!?;:\"`()\[\]{}])", r" \1 ", s)
    tokens = []
    for t in s.split():
        if t not in _CLITICS:
            t = t.strip("'")  # quotes around words are punctuation; clitics keep theirs
        if t and t not in _PTB_PUNCTUATION and t.strip("-.") != "":
            tokens.append(t)
    return " ".join(tokens)


def java_available() -> bool:
    return shutil.which("java") is not None


def _tokenize(texts: dict[str, list[str]], use_java: bool) -> dict[str, list[str]]:
    """Tokenise {key: [sentences]} with PTBTokenizer (Java) or the pure-Python fallback.

    Empty sentences are kept out of the Java call: PTBTokenizer's line-based
    output drops a trailing empty line and would misalign keys.
    """
    if not use_java:
        return {k: [simple_ptb_tokenize(t) for t in v] for k, v in texts.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    slots = [(k, i) for k, v in texts.items() for i, t in enumerate(v) if t.strip()]
    out = {k: [""] * len(v) for k, v in texts.items()}
    if slots:
        flat = {f"{n}": [{"caption": texts[k][i]}] for n, (k, i) in enumerate(slots)}
        tokenized = PTBTokenizer().tokenize(flat)
        for n, (k, i) in enumerate(slots):
            out[k][i] = tokenized[f"{n}"][0]
    return out


# ----------------------------------------------------------------------------- captioning scores


class CachedMeteor:
    """pycocoevalcap's METEOR 1.5 (one Java process) with per-question statistics computed once.

    Scoring several subsets of a split (overall, then per type) would otherwise re-align every
    question for each subset. The corpus score of a subset comes from the same EVAL request
    pycocoevalcap's ``Meteor.compute_score`` sends, fed with the cached statistics lines.
    """

    def __init__(self):
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = Meteor()
        self._stats: dict[str, str] = {}

    def compute_score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
        """Same arguments and result as ``Meteor.compute_score``: (corpus score, per-key scores) in [0, 1]."""
        process = self._meteor.meteor_p
        with self._meteor.lock:
            for key in gts:
                if key not in self._stats:
                    self._stats[key] = self._meteor._stat(res[key][0], gts[key])
            line = "EVAL ||| " + " ||| ".join(self._stats[key] for key in gts)
            process.stdin.write(f"{line}\n".encode())
            process.stdin.flush()
            per_key = [float(process.stdout.readline().strip()) for _ in gts]
            return float(process.stdout.readline().strip()), per_key



def caption_scores(
    refs: dict[str, list[str]], hyps: dict[str, str], meteor=None, cider_per_key: dict[str, float] | None = None
) -> dict[str, float | None]:
    """BLEU-1..4, CIDEr, ROUGE-L (and METEOR when a `pycocoevalcap` Meteor scorer is given), in percent.

    refs: {key: [tokenised reference, ...]} (non-empty lists); hyps: {key: tokenised hypothesis}.
    CIDEr-D's document frequencies come from `refs`, so it depends on the corpus scored: for a
    subset of a larger corpus pass `cider_per_key` (per-key CIDEr of the whole corpus, x100) and
    the subset's CIDEr is their mean. When `cider_per_key` is a dict that is empty, it is filled
    with this corpus' per-key CIDEr.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = list(refs)
    gts = {k: list(refs[k]) for k in keys}
    res = {k: [hyps[k]] for k in keys}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores: dict[str, float | None] = {f"BLEU-{n + 1}": 100.0 * float(bleu[n]) for n in range(4)}
    if cider_per_key:
        scores["CIDEr"] = sum(cider_per_key[k] for k in keys) / len(keys)
    else:
        if any(t.split() for v in gts.values() for t in v):
            per_key = 100.0 * Cider().compute_score(gts, res)[1]
        else:  # pycocoevalcap's CIDEr asserts on an empty vocabulary; no reference n-grams -> no consensus
            per_key = [0.0] * len(keys)
        scores["CIDEr"] = float(sum(per_key) / len(keys))
        if cider_per_key is not None:
            cider_per_key.update({k: float(v) for k, v in zip(keys, per_key)})
    scores["ROUGE-L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
    scores["METEOR"] = None if meteor is None else 100.0 * float(meteor.compute_score(gts, res)[0])
    return scores


def score_predictions(
    preds: Mapping[str, str],
    gts: Mapping[str, Sequence[str]],
    types: Mapping[str, str] | None = None,
    use_java: bool | None = None,
) -> dict:
    """Score predictions against reference answers, overall and per question type.

    preds: {question_id: predicted answer}; a question of `gts` with no prediction scores as "".
    gts:   {question_id: [reference answers]}; questions with no answers (test splits) are skipped.
    types: {question_id: type}; missing ids count as "unknown".
    use_java: None = use Java if ``java`` is on PATH; False forces the pure-Python tokeniser
              and no METEOR.

    Returns a JSON-ready dict::

        {"overall": {metric: value, ..., "n": count}, "per_type": {type: {...}},
         "n_scored", "n_without_answers", "n_missing_predictions", "n_extra_predictions",
         "scale": "percent", "tokenizer": ..., "meteor": status}

    with metrics `METRIC_NAMES`; METEOR is None when unavailable (see "meteor").
    """
    types = types or {}
    use_java = java_available() if use_java is None else use_java
    scored = [q for q in gts if len(gts[q]) > 0]
    missing = [q for q in scored if q not in preds]
    extra = [q for q in preds if q not in gts]

    norm_hyp = {q: normalize_answer(preds.get(q, "")) for q in scored}
    norm_refs = {q: [normalize_answer(a) for a in gts[q]] for q in scored}
    tok = _tokenize({**{f"h{q}": [norm_hyp[q]] for q in scored}, **{f"r{q}": norm_refs[q] for q in scored}}, use_java)
    tok_hyp = {q: tok[f"h{q}"][0] for q in scored}
    tok_refs = {q: tok[f"r{q}"] for q in scored}

    # METEOR runs in one Java process shared by all blocks; a failure switches it off and is reported.
    meteor_state: dict = {"scorer": None, "status": METEOR_UNAVAILABLE}
    if use_java and scored:
        try:
            meteor_state.update(scorer=CachedMeteor(), status="pycocoevalcap METEOR 1.5")
        except Exception as e:  # noqa: BLE001 - any launch failure is reported, not hidden
            meteor_state["status"] = f"unavailable: {type(e).__name__}: {e}"

    cider_per_question: dict[str, float] = {}  # filled by the overall block, reused by the type blocks

    def block(ids: list[str]) -> dict:
        if not ids:
            return {**{m: None for m in METRIC_NAMES}, "n": 0}
        em = sum(exact_match(preds.get(q, ""), gts[q]) for q in ids)
        rem = sum(refined_exact_match(preds.get(q, ""), gts[q]) for q in ids)
        out: dict = {"EM@1": 100.0 * em / len(ids), "refined_EM": 100.0 * rem / len(ids)}
        refs, hyps = {q: tok_refs[q] for q in ids}, {q: tok_hyp[q] for q in ids}
        try:
            out.update(caption_scores(refs, hyps, meteor_state["scorer"], cider_per_question))
        except Exception as e:  # noqa: BLE001
            if meteor_state["scorer"] is None:
                raise
            meteor_state.update(scorer=None, status=f"unavailable: METEOR failed ({type(e).__name__}: {e})")
            out.update(caption_scores(refs, hyps, None, cider_per_question))
        out["n"] = len(ids)
        return out

    by_type: dict[str, list[str]] = defaultdict(list)
    for q in scored:
        by_type[types.get(q, "unknown")].append(q)
    overall = block(scored)  # first: fills cider_per_question
    result = {
        "overall": overall,
        "per_type": {t: block(ids) for t, ids in sorted(by_type.items())},
        "n_scored": len(scored),
        "n_without_answers": len(gts) - len(scored),
        "n_missing_predictions": len(missing),
        "n_extra_predictions": len(extra),
        "scale": "percent",
        "tokenizer": "PTBTokenizer (java)" if use_java else "python fallback (no java runtime)",
        "meteor": meteor_state["status"],
    }
    meteor_state["scorer"] = None  # Meteor.__del__ stops the Java process
    return result
