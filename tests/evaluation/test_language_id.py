"""Language identification: script rules, py3langid among the candidates, code mapping, accuracy
on held-out text (full texts and 50-character snippets), no letters."""

from __future__ import annotations

import pytest

import crane_lens as cl
from crane_lens.data.languages import canonical_lang
from crane_lens.data.sources.builtin import builtin_langs
from crane_lens.errors import UnknownLanguageError
from crane_lens.evaluation.language_id import (
    LanguageIdentifier,
    default_identifier,
    detect_script,
    identifier_for,
    identify_language,
    langid_label,
    supported_languages,
)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("ダイアログエディター", "ja"),  # kana only
        ("東京は日本の首都です。", "ja"),  # kana with kanji
        ("書式設定のダイアログを開きます", "ja"),
        ("我爱北京天安门", "zh"),  # Han without kana
        ("修改对话框编辑器中控件的属性", "zh"),
        ("LibreOffice Impress 使用说明", "zh"),  # Latin product name inside Chinese
        ("대화 상자 편집기에서 콘트롤의 속성 변경", "ko"),
        ("Integer: Integer 변수(-32768 - 32767)", "ko"),
        ("Изменение свойств элементов управления", "ru"),
        ("يولد جميع الناس أحرارًا متساوين في الكرامة", "ar"),
        ("StarWriter/Master 4.0 वस्तु", "hi"),
        ("यह खण्ड बेसिक के लिए", "hi"),
    ],
)
def test_script_rules(text: str, lang: str) -> None:
    assert identify_language(text) == lang


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("The quick brown fox jumps over the lazy dog", "en"),
        ("Der schnelle braune Fuchs springt über den faulen Hund", "de"),
        ("El rápido zorro marrón salta sobre el perro perezoso", "es"),
        ("Le renard brun rapide saute par-dessus le chien paresseux", "fr"),
        ("Rubah coklat yang cepat melompati anjing yang malas", "id"),
        ("La volpe marrone veloce salta sopra il cane pigro", "it"),
        ("De snelle bruine vos springt over de luie hond", "nl"),
        ("Szybki brązowy lis przeskakuje nad leniwym psem", "pl"),
        ("A rápida raposa marrom pula sobre o cão preguiçoso", "pt"),
        ("Hızlı kahverengi tilki tembel köpeğin üzerinden atlar", "tr"),
        ("Con cáo nâu nhanh nhẹn nhảy qua con chó lười", "vi"),
    ],
)
def test_latin_sentences(text: str, lang: str) -> None:
    assert identify_language(text) == lang


@pytest.mark.parametrize(
    "text", ["", "   \n\t", "12345", "3.14 + 2 = 5.14", "!?.,;:«»—…", "٣٤٥ ४२"]
)
def test_no_letters_is_none(text: str) -> None:
    assert identify_language(text) is None
    assert default_identifier().scores(text) == {}
    assert detect_script(text) is None


def test_scripts_of_no_candidate_language_are_none() -> None:
    assert identify_language("Γειά σου κόσμε, τι κάνεις;") is None  # Greek: not a corpus language
    assert identify_language("สวัสดีชาวโลก") is None  # Thai
    assert identify_language("α, β, γ, ... (Greek)") is None  # the Greek letters dominate
    # ... but they are identified when asked among languages written in those scripts.
    assert identify_language("Γειά σου κόσμε, τι κάνεις;", candidates=["el", "en"]) == "el"
    assert identify_language("สวัสดีชาวโลก", candidates=["th", "zh"]) == "th"


def test_candidates_restrict_the_answer() -> None:
    french = "Ceci est une phrase écrite en français, avec des accents."
    assert identify_language(french) == "fr"
    assert identify_language(french, candidates=["en", "de"]) in {"en", "de"}
    assert identify_language(french, candidates=["es"]) == "es"  # the only Latin candidate
    assert identify_language(french, candidates=["ru", "zh"]) is None  # no Latin candidate
    scores = default_identifier().scores(french, candidates=["it", "es", "pt"])
    assert set(scores) == {"it", "es", "pt"}
    assert sum(scores.values()) == pytest.approx(1.0)
    assert identify_language("Привет, мир", candidates=["en", "de"]) is None
    # Han without kana: Chinese or Japanese, py3langid decides; kana: Japanese only.
    assert identify_language("漢字", candidates=["ja", "en"]) == "ja"
    assert identify_language("我爱北京天安门") == "zh"
    assert identify_language("ひらがな", candidates=["zh", "ko"]) is None
    assert identify_language("Hello world", candidates=["pt-BR", "en_US"]) == "en"  # any tag form


def test_restricting_to_candidates_equals_py3langid_restricted_to_them() -> None:
    # A naive Bayes' best class among a subset is the subset's best: scores over all 17, then
    # restricted, give py3langid.set_languages' answer.
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as Langid

    reference = Langid.from_model_file(MODEL_FILE)
    texts = list(cl.load_corpus("builtin", langs=["es", "pt", "it"], split="eval")["pt"])[:60]
    for subset in (["es", "pt"], ["it", "es", "pt"], ["pt", "fr", "nl", "en"]):
        reference.set_languages(subset)
        for text in texts:
            if detect_script(text) == "Latn":
                assert identify_language(text, candidates=subset) == reference.classify(text)[0]


def test_codes_map_to_py3langid_labels_and_back() -> None:
    for code in ("zh", "zh-Hans", "zho_Hans", "cmn", "ZH"):
        assert langid_label(code) == "zh"
    assert [langid_label(x) for x in ("jpn", "ja-JP", "kor", "ko-KR", "hin", "hi-IN")] == [
        "ja", "ja", "ko", "ko", "hi", "hi"]  # fmt: skip
    assert set(builtin_langs()) <= set(supported_languages())
    assert all(langid_label(lang) == lang for lang in builtin_langs())
    # Answers are our canonical codes, whatever form the languages were given in.
    lid = LanguageIdentifier(["zho_Hans", "jpn", "kor", "hin", "eng"])
    assert lid.langs == ["zh", "ja", "ko", "hi", "en"]
    texts = [
        "我爱北京天安门",
        "東京は日本の首都です。",
        "대화 상자 편집기",
        "यह खण्ड बेसिक के लिए",
        "Hello there",
    ]
    assert lid.predict_many(texts) == ["zh", "ja", "ko", "hi", "en"]
    with pytest.raises(UnknownLanguageError, match="does not know"):
        langid_label("haw")  # Hawaiian: a valid tag py3langid was not trained on
    assert [langid_label(x) for x in ("fil", "tl", "nb", "yue")] == ["tl", "tl", "no", "yue"]


def test_languages_sharing_a_label_are_refused() -> None:
    if canonical_lang("zh-Hant") == "zh":  # the language table merges the scripts
        assert LanguageIdentifier(["zh", "zh-Hant"]).langs == ["zh"]
    else:
        with pytest.raises(ValueError, match="cannot tell"):
            LanguageIdentifier(["zh", "zh-Hant"])


def test_languages_beyond_the_embedded_17() -> None:
    lid = LanguageIdentifier(["uk", "ru", "sw", "en"])
    assert lid.predict("Доброго ранку, як справи? Дякую, все добре.") == "uk"
    assert lid.predict("Доброе утро, как дела? Спасибо, всё хорошо.") == "ru"
    assert lid.predict("Habari ya asubuhi, rafiki yangu. Asante sana.") == "sw"
    assert identify_language("Habari ya asubuhi, rafiki yangu", candidates=["sw", "en"]) == "sw"


def test_default_identifier_is_cached() -> None:
    lid = default_identifier()
    assert lid is default_identifier()
    assert lid.langs == builtin_langs()


# Measured on the eval split (benchmarks/bench_language_id.py, docs/language-id.md): texts of at
# least 20 characters: mean 0.997, en 0.973 (short UI strings such as "OpenDocument Drawing"),
# ar 0.996, de 0.994, it/pl/pt 0.998, es/nl 0.995, fr 0.997, the others 1.000. First 50
# characters: mean 1.000, pt 0.996, de 0.998, the others 1.000.
FLOORS = {"texts": ({"en": 0.96}, 0.985), "50 chars": ({"pt": 0.98}, 0.99)}


@pytest.mark.integration
@pytest.mark.parametrize("length", ["texts", "50 chars"])
def test_accuracy_on_held_out_eval_texts(length: str) -> None:
    """Scored per language on the embedded eval split (crane_lens trains nothing on it)."""
    corpus = cl.load_corpus("builtin", split="eval")
    lid = default_identifier()
    floors, floor = FLOORS[length]
    accuracies = {}
    for lang in corpus.langs:
        if length == "texts":
            texts = [t for t in corpus[lang] if len(t) >= 20]
        else:
            texts = [t[:50] for t in corpus[lang] if len(t) >= 50]
        assert len(texts) > 80
        accuracies[lang] = sum(p == lang for p in lid.predict_many(texts)) / len(texts)
    for lang, accuracy in accuracies.items():
        assert accuracy >= floors.get(lang, floor), (lang, accuracy)
    assert sum(accuracies.values()) / len(accuracies) >= 0.99


def test_identifier_for_adds_languages_beyond_the_17() -> None:
    assert identifier_for(["en", "zh"]) is default_identifier()
    lid = identifier_for(["sw"])
    assert lid.langs == ["sw", *builtin_langs()] and lid is identifier_for(["sw"])
    assert identify_language("Habari ya asubuhi, rafiki yangu", candidates=["sw", "en"]) == "sw"
    if canonical_lang("zh-Hant") != "zh":  # a distinct language: zh (same label) makes way
        assert identifier_for(["zh-Hant"]).langs == ["zh-Hant", *(x for x in builtin_langs()
                                                                  if x != "zh")]  # fmt: skip
        assert identify_language("我愛北京天安門", candidates=["zh-Hant", "en"]) == "zh-Hant"


@pytest.mark.integration
def test_generation_check_asks_among_the_prompt_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    from crane_lens.evaluation import generation

    model = cl.load_model("crane-tiny", device="cpu")
    swahili = "Habari ya asubuhi, rafiki yangu. Asante sana kwa msaada wako."
    monkeypatch.setattr(generation, "_continuation_text", lambda *args: swahili)
    report = generation.generation_check(
        model, {"sw": ["Habari ya", "Asante"], "en": ["Good morning"]}, max_new_tokens=1
    )
    assert report.identified == {"sw": ["sw", "sw"], "en": ["sw"]}

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("generated before refusing the language")

    monkeypatch.setattr(generation, "greedy_generate", never)
    with pytest.raises(UnknownLanguageError, match="'haw'"):
        generation.generation_check(model, {"haw": ["Aloha kakahiaka"]})
