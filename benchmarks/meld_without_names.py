"""A MELD manifest whose text names no speaker, for reporting T2 without the names it otherwise reads.

    python benchmarks/meld_without_names.py --data ../shared/data/meld -o runs/meld-no-names.jsonl
    abhinaya train recipes/meld/t2.yaml --set data.manifest=runs/meld-no-names.jsonl \
        --set 'text.template="{text}"' -o runs/meld-t2-no-names

The shipped T2 recipe formats each utterance as ``"{speaker}: {text}"`` and reads three earlier turns as
``"Speaker: text"`` lines. MELD's train and dev share speakers, so a model may learn a character's habits rather than
the emotion in the words. This writes the prepared MELD manifest with each context line's ``Name: `` prefix removed;
with ``text.template={text}`` the model then sees the words and the conversation, and no name.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def strip_name(line: str, names: set[str]) -> str:
    name, sep, rest = line.partition(": ")
    return rest if sep and name in names else line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="MELD folder (train_sent_emo.csv, dev_sent_emo.csv)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    from abhinaya.corpora import prepare_corpus
    from abhinaya.manifest import read_manifest, write_manifest

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    prepare_corpus("meld", args.data, output)
    utterances = read_manifest(output)
    names = {u.speaker for u in utterances if u.speaker}
    changed = 0
    stripped = []
    for utt in utterances:
        context = [strip_name(line, names) for line in utt.context] if utt.context else utt.context
        changed += sum(a != b for a, b in zip(utt.context or [], context or []))
        stripped.append(replace(utt, context=context))
    write_manifest(output, stripped)
    print(f"{output}: {len(stripped)} utterances, {changed} context lines without their speaker's name")


if __name__ == "__main__":
    main()
