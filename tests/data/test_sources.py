"""Corpus sources users bring: text folders, JSON lines and `datasets` (all local stand-ins)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

import crane_lens as cl

EN = ["Hello world.", "A second line."]
VI = ["Xin chào thế giới.", "Dòng thứ hai."]
ZH = ["你好，世界。", "第二行。"]
# A flat folder holds 10 % out as eval and needs at least 10 distinct texts per language.
EN20 = [f"English line number {i}." for i in range(20)]
VI20 = [f"Dòng tiếng Việt số {i}." for i in range(20)]
ZH20 = [f"第{i}行中文。" for i in range(20)]


# ---------------------------------------------------------------------------- text folders
def _folder(root: Path) -> Path:
    (root / "en.txt").write_text("\n".join(EN20) + "\n\n", encoding="utf-8")
    (root / "vi.txt").write_text("\n".join(VI20), encoding="utf-8")
    (root / "zh-Hans.txt").write_text("\n".join(ZH20), encoding="utf-8")
    return root


def test_text_folder_one_text_per_line(tmp_path: Path) -> None:
    train = cl.load_corpus(_folder(tmp_path))
    held_out = cl.load_corpus(tmp_path, split="eval")
    assert train.langs == held_out.langs == ["en", "vi", "zh"]
    for lang, lines in (("en", EN20), ("zh", ZH20)):
        # Every line lands in exactly one split, in file order.
        assert sorted(train[lang] + held_out[lang]) == sorted(lines)
        assert train[lang] == [t for t in lines if t not in held_out[lang]]


def test_text_folder_paragraph_and_file_units(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "eval").mkdir()
    (tmp_path / "train" / "en.txt").write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    (tmp_path / "eval" / "en.txt").write_text("x", encoding="utf-8")
    assert cl.load_corpus(tmp_path, unit="paragraph")["en"] == ["one two", "three"]
    assert cl.load_corpus(tmp_path, unit="file")["en"] == ["one\ntwo\n\nthree"]


def test_text_folder_split_subfolders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "eval").mkdir()
    _folder(tmp_path / "train")
    (tmp_path / "eval" / "en.txt").write_text("held out\n", encoding="utf-8")
    assert cl.load_corpus(tmp_path, split="eval")["en"] == ["held out"]
    assert cl.load_corpus(tmp_path, split="train", langs=["vi"])["vi"] == VI20  # all of it


def test_text_folder_missing_language(tmp_path: Path) -> None:
    with pytest.raises(cl.MissingLanguageError, match=r"no text for 'fr'.*Available: en, vi, zh"):
        cl.load_corpus(_folder(tmp_path), langs=["fr"])


def test_text_folder_empty_file(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "fr.txt").write_text(" \n\n", encoding="utf-8")
    # Names the file, and no split: the user chose none (the default 'train' is not theirs).
    with pytest.raises(cl.EmptyCorpusError, match=r"fr\.txt has no text for 'fr'") as info:
        cl.load_corpus(tmp_path)
    assert "split" not in str(info.value)


def test_text_folder_empty_file_names_the_chosen_split(tmp_path: Path) -> None:
    for split in ("train", "eval"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "en.txt").write_text("text\n", encoding="utf-8")
    (tmp_path / "eval" / "fr.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(cl.EmptyCorpusError, match=r"eval/fr\.txt \(split 'eval'\) has no text"):
        cl.load_corpus(tmp_path, split="eval", langs="fr")


def test_text_folder_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "de.txt").write_bytes("Grüße".encode("latin-1"))
    with pytest.raises(cl.CorpusFormatError, match="not UTF-8.*Re-encode"):
        cl.load_corpus(tmp_path)


def test_text_folder_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "en.txt").mkdir()  # exists, but cannot be read as a file
    with pytest.raises(cl.CorpusFormatError, match="Cannot read"):
        cl.load_corpus(tmp_path, format="text")


def test_text_folder_file_name_not_a_language(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(cl.CorpusFormatError, match="<lang>.txt"):
        cl.load_corpus(tmp_path)


def test_missing_path() -> None:
    with pytest.raises(cl.CorpusFormatError, match="no such folder: ./does/not/exist"):
        cl.load_corpus("./does/not/exist")


def test_missing_folder_is_not_a_hub_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cl.CorpusFormatError) as info:
        cl.load_corpus("missing_folder/")
    message = str(info.value)
    assert message.startswith("no such folder: missing_folder/ (pass 'builtin', a folder")
    assert "dataset 'missing_folder" not in message  # not the hub's answer
    with pytest.raises(cl.CorpusFormatError, match="no such file: texts.jsonl"):
        cl.load_corpus("texts.jsonl")
    with pytest.raises(cl.CorpusFormatError, match="no such folder: "):
        cl.load_corpus(tmp_path / "gone", format="text")
    # Without a slash it may be a hub id: the hub's answer, saying no local folder exists.
    with pytest.raises(cl.CorpusFormatError, match="no local folder or file 'missing_folder'"):
        cl.load_corpus("missing_folder")


# ---------------------------------------------------------------------------- JSON lines
def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def test_jsonl_with_keys_and_bcp47(tmp_path: Path) -> None:
    rows = [{"lang": "en", "text": t, "key": i, "split": "train"} for i, t in enumerate(EN)]
    rows += [{"lang": "zh-Hans", "text": t, "key": i, "split": "train"} for i, t in enumerate(ZH)]
    corpus = cl.load_corpus(_jsonl(tmp_path / "c.jsonl.gz", rows))
    assert corpus.langs == ["en", "zh"]
    table = corpus.parallel()
    assert list(table.index) == ["0", "1"] and table.loc["1", "zh"] == ZH[1]


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"language": "vi", "sentence": t} for t in VI20])
    corpus = cl.load_corpus(path, lang_field="language", text_field="sentence")
    assert len(corpus["vi"]) == 18 and set(corpus["vi"]) < set(VI20)  # 2 held out as eval
    assert corpus.info.source == str(path)  # the file, not a field name
    with pytest.raises(cl.CorpusFormatError, match=rf"^{re.escape(str(path))} has no split 'tset'"):
        cl.load_corpus(path, split="tset", lang_field="language", text_field="sentence")


def test_jsonl_missing_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"lang": "en", "content": "x"}])
    with pytest.raises(
        cl.CorpusFormatError, match=r"c.jsonl, line 1: no field 'text' \(fields: lang, content\)"
    ):
        cl.load_corpus(path)


def test_jsonl_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"lang": "en", "text": "ok"}\n{"lang": "en", "text": \n', encoding="utf-8")
    with pytest.raises(cl.CorpusFormatError, match="line 2: not valid JSON"):
        cl.load_corpus(path)


def test_jsonl_only_empty_texts(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"lang": "en", "text": "  "}])
    with pytest.raises(cl.EmptyCorpusError):
        cl.load_corpus(path)


def test_jsonl_unknown_language(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", [{"lang": "qq", "text": "x"}])
    with pytest.raises(cl.CorpusFormatError, match="line 1: Unknown language 'qq'"):
        cl.load_corpus(path)


# ---------------------------------------------------------------------------- datasets
def _flores_like(root: Path) -> Path:
    """A local dataset repository laid out like FLORES+: one parquet config per language."""
    from datasets import Dataset

    configs = {"eng_Latn": EN, "vie_Latn": VI, "cmn_Hans": ZH, "zho_Hans": ZH}
    yaml = ["---", "configs:"]
    for name, texts in configs.items():
        (root / "dev").mkdir(parents=True, exist_ok=True)
        Dataset.from_dict({"id": list(range(len(texts))), "text": texts}).to_parquet(
            root / "dev" / f"{name}.parquet"
        )
        yaml += [
            f"- config_name: {name}",
            "  data_files:",
            "  - split: dev",
            f"    path: dev/{name}.parquet",
        ]
    (root / "README.md").write_text("\n".join([*yaml, "---", ""]), encoding="utf-8")
    return root


def test_hf_per_language_configs_like_flores(tmp_path: Path) -> None:
    repo = _flores_like(tmp_path / "flores_plus")
    corpus = cl.load_corpus(
        repo, langs=["en", "vi", "zh"], split="dev", config="{flores}", key_field="id"
    )
    assert corpus.langs == ["en", "vi", "zh"]
    assert corpus["vi"] == VI
    assert corpus.parallel().loc["1", "zh"] == ZH[1]


def test_hf_per_language_config_mapping(tmp_path: Path) -> None:
    repo = _flores_like(tmp_path / "flores_plus")
    corpus = cl.load_corpus(repo, langs=["zh"], split="dev", config={"zh": "cmn_Hans"})
    assert corpus["zh"] == ZH


def test_hf_single_dataset_with_lang_column(tmp_path: Path) -> None:
    from datasets import Dataset

    data = Dataset.from_dict(
        {"lang": ["en", "en", "vi", "zh-Hans", "xx-unknown"], "text": [*EN, VI[0], ZH[0], "?"]}
    )
    data.to_parquet(tmp_path / "mixed.parquet")
    corpus = cl.load_corpus(
        "parquet", format="hf", data_files=str(tmp_path / "mixed.parquet"), lang_field="lang"
    )
    assert corpus.langs == ["en", "vi", "zh"] and corpus["en"] == EN
    one = cl.load_corpus(
        "parquet", data_files=str(tmp_path / "mixed.parquet"), lang_field="lang", langs="vi"
    )
    assert one["vi"] == [VI[0]]


def test_hf_saved_to_disk(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    # One saved Dataset has no splits: 10 % is held out as eval, like a text folder.
    Dataset.from_dict({"language": ["en"] * 20 + ["vi"] * 20, "text": EN20 + VI20}).save_to_disk(
        tmp_path / "ds"
    )
    train = cl.load_corpus(tmp_path / "ds", lang_field="language")
    held_out = cl.load_corpus(tmp_path / "ds", lang_field="language", split="eval")
    assert len(train["vi"]) == 18 and len(held_out["vi"]) == 2
    assert sorted(train["vi"] + held_out["vi"]) == sorted(VI20)
    # A saved DatasetDict has its own splits, and names them when asked for another one.
    DatasetDict({"train": Dataset.from_dict({"language": ["vi"], "text": [VI[0]]})}).save_to_disk(
        tmp_path / "dd"
    )
    assert cl.load_corpus(tmp_path / "dd", lang_field="language")["vi"] == [VI[0]]
    with pytest.raises(cl.CorpusFormatError, match="has no split 'eval'; its splits are: train"):
        cl.load_corpus(tmp_path / "dd", lang_field="language", split="eval")


def test_hf_missing_field_lists_columns(tmp_path: Path) -> None:
    repo = _flores_like(tmp_path / "flores_plus")
    with pytest.raises(cl.CorpusFormatError, match=r"no field 'sentence'; its fields are id, text"):
        cl.load_corpus(repo, langs=["en"], split="dev", config="{flores}", text_field="sentence")


def test_hf_language_missing_from_dataset(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"lang": ["en"], "text": ["x"]}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(cl.MissingLanguageError, match=r"no rows for 'vi'.*Available: en"):
        cl.load_corpus(
            "parquet", data_files=str(tmp_path / "d.parquet"), lang_field="lang", langs="en,vi"
        )


def test_hf_config_template_needs_langs(tmp_path: Path) -> None:
    repo = _flores_like(tmp_path / "flores_plus")
    with pytest.raises(cl.CorpusFormatError, match="needs the languages"):
        cl.load_corpus(repo, split="dev", config="{flores}")


def test_hf_without_language_information(tmp_path: Path) -> None:
    repo = _flores_like(tmp_path / "flores_plus")
    with pytest.raises(cl.CorpusFormatError, match="lang_field='lang'"):
        cl.load_corpus(repo, split="dev")


def test_hf_unreachable_dataset_is_a_clear_error() -> None:
    # conftest sets HF_HUB_OFFLINE=1: a hub id cannot be fetched and must say what to do.
    with pytest.raises(cl.CorpusFormatError, match="pass its local folder"):
        cl.load_corpus("someorg/somedataset", lang_field="lang")


def test_hf_streaming_with_a_cap_per_language(tmp_path: Path) -> None:
    from datasets import Dataset

    langs = ["en", "vi"] * 50
    Dataset.from_dict({"lang": langs, "text": [f"t{i}" for i in range(100)]}).to_parquet(
        tmp_path / "d.parquet"
    )
    corpus = cl.load_corpus(
        "parquet",
        data_files=str(tmp_path / "d.parquet"),
        lang_field="lang",
        langs="en,vi",
        max_texts_per_lang=3,
        streaming=True,
    )
    assert corpus["en"] == ["t0", "t2", "t4"] and corpus["vi"] == ["t1", "t3", "t5"]
