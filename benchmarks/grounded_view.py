"""Time to prepare the recommender's grounded training view (``--grounding catalog``) of a training split.

    python benchmarks/grounded_view.py --data out/redial-train-test                 # batched queries (default)
    python benchmarks/grounded_view.py --data out/redial-train-test --one-by-one    # one forward pass per turn
    python benchmarks/grounded_view.py --data out/redial-train-test --lists out/view-lists.json

Before its first step, ``crsdata train recommender-simulator --grounding catalog`` gives every real recommender
turn a candidate list (:func:`crsdata.training.interplay.grounded_training_view`), each with a MiniLM query. This
times that view for every dialogue of ``--split``, the way :func:`~crsdata.training.interplay.prepare_sequences`
makes it: the split's queries encoded ahead in batches (:meth:`CatalogRetriever.encode_queries`), or, with
``--one-by-one``, one query per turn as before. The catalog's item vectors are read (or encoded and cached)
first and timed apart. ``--lists`` writes every dialogue's candidate lines as JSON, so two runs (or two commits:
put an older ``crsdata`` first on ``PYTHONPATH``) can be compared line for line. The load average is printed
before and after: other jobs on the machine change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a folder built by crsdata build, with items")
    parser.add_argument("--split", default="train")
    parser.add_argument("--candidates", type=int, default=5, help="K, the films a list holds (default 5)")
    parser.add_argument("--seed", type=int, default=42, help="the recipe's seed (default 42)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N dialogues (default: all)")
    parser.add_argument("--one-by-one", action="store_true", help="one query per turn, as before batching")
    parser.add_argument("--lists", default="", help="write every dialogue's candidate lines to this JSON file")
    args = parser.parse_args(argv)

    import crsdata
    from crsdata.simulate.grounding import CatalogRetriever
    from crsdata.training.data import load_data_folder
    from crsdata.training.interplay import folders_catalog, grounded_training_view, label_turns, training_records

    print(f"crsdata from {os.path.dirname(crsdata.__file__)}; load before {os.getloadavg()}", flush=True)
    folder = load_data_folder(args.data)
    catalog = folders_catalog([folder])
    records = training_records([folder], args.split)
    if args.limit:
        records = records[: args.limit]

    clock = time.perf_counter()
    cpu = time.process_time()
    retriever = CatalogRetriever(catalog.rows())
    retriever.matrix  # noqa: B018 - the item vectors, read from the cache or encoded
    items_s, items_cpu = time.perf_counter() - clock, time.process_time() - cpu

    clock, cpu = time.perf_counter(), time.process_time()
    dialogues = [label_turns(record)[0] for record in records]
    queries = 0
    if not args.one_by_one:
        from crsdata.simulate.grounding import training_queries

        texts = training_queries(retriever, dialogues, args.candidates)
        queries = retriever.encode_queries(texts)
    encode_s = time.perf_counter() - clock
    lists: dict[str, Any] = {}
    turns = 0
    for record, dialogue in zip(records, dialogues, strict=True):
        view = grounded_training_view(
            record, dialogue, "recommender", catalog, retriever, k=args.candidates, seed=args.seed
        )
        turns += sum(t["role"] == "recommender" for t in dialogue)
        lists[str(record["dialogue_id"])] = {str(i): lines for i, lines in sorted(view.candidates.items())}
    view_s, view_cpu = time.perf_counter() - clock, time.process_time() - cpu

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mode = "one by one" if args.one_by_one else f"batched ({queries:,} queries encoded ahead)"
    print(f"{len(records):,} dialogues of {args.split}, {turns:,} recommender turns, {len(catalog):,} catalog films")
    print(f"item vectors: {items_s:.1f} s wall, {items_cpu:.1f} s CPU")
    print(
        f"training view, {mode}: {view_s:.1f} s wall ({encode_s:.1f} s labelling and encoding ahead), "
        f"{view_cpu:.1f} s CPU; peak RSS {peak_mb:.0f} MB"
    )
    print(f"load after {os.getloadavg()}")
    if args.lists:
        with open(args.lists, "w", encoding="utf-8") as handle:
            json.dump(lists, handle, ensure_ascii=False, indent=0, sort_keys=True)
        print(f"candidate lines of {len(lists):,} dialogues written to {args.lists}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
