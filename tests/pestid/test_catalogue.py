import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pestid.catalogue import OFFICER_EN, OFFICER_VI, Category, fold, load_catalogue, parse_catalogue
from pestid.cli import app
from pestid.errors import CatalogueError

DOMAIN = Path(__file__).resolve().parents[3] / "shared" / "DOMAIN.md"

DOMAIN_IDS = [
    "brown_planthopper",
    "whitebacked_planthopper",
    "small_brown_planthopper",
    "green_leafhopper",
    "rice_leaffolder",
    "yellow_stem_borer",
    "striped_stem_borer",
    "pink_stem_borer",
    "rice_bug",
    "rice_black_bug",
    "whorl_maggot",
    "gall_midge",
    "rice_thrips",
    "rice_hispa",
    "rice_caseworm",
    "armyworms",
    "rice_skipper",
    "mole_cricket",
    "rice_mealybug",
    "panicle_rice_mite",
    "golden_apple_snail",
    "rice_field_rat",
    "rice_blast",
    "sheath_blight",
    "brown_spot",
    "bakanae",
    "false_smut",
    "sheath_rot",
    "grain_discoloration",
    "bacterial_leaf_blight",
    "bacterial_leaf_streak",
    "bacterial_panicle_blight",
    "grassy_stunt",
    "ragged_stunt",
    "tungro",
    "black_streaked_dwarf",
    "wolf_spider",
    "lady_beetle",
    "mirid_bug",
    "rove_beetle",
    "damselfly",
    "healthy_rice",
]

ENTRY = """
  - id: {id}
    category: insect
    name_vi: Rầy
    name_en: hopper
    scientific: X y
    signs_vi: Con rầy nhỏ ở gốc lúa.
    signs_en: A small hopper at the base of the plant.
    advice_vi: Không phun.
    advice_en: {advice_en}
    advice_vouched: true
    source: IRRI Rice Knowledge Bank
"""


def test_catalogue_holds_every_organism_of_the_domain():
    cat = load_catalogue()
    assert set(DOMAIN_IDS) <= set(cat.ids())


@pytest.mark.skipif(not DOMAIN.is_file(), reason="../shared/DOMAIN.md not present")
def test_catalogue_matches_the_ids_written_in_domain_md():
    ids = set(re.findall(r"^\s*- ([a-z_]+):", DOMAIN.read_text(encoding="utf-8"), flags=re.M))
    assert ids and ids <= set(load_catalogue().ids())


def test_vectors_point_at_the_diseases_they_carry():
    cat = load_catalogue()
    assert set(cat.get("brown_planthopper").vector_of) == {"grassy_stunt", "ragged_stunt"}
    assert cat.get("green_leafhopper").vector_of == ("tungro", "yellow_dwarf")
    assert set(cat.get("zigzag_leafhopper").vector_of) == {"tungro", "orange_leaf"}
    assert cat.get("whitebacked_planthopper").vector_of == ("black_streaked_dwarf",)


def test_natural_enemies_advise_against_spraying_in_both_languages():
    enemies = [o for o in load_catalogue() if o.category is Category.natural_enemy]
    assert len(enemies) >= 5
    for org in enemies:
        assert "không phun" in org.advice_vi.lower()
        assert "do not spray" in org.advice_en.lower()


def test_stem_borers_share_a_parent_group():
    cat = load_catalogue()
    children = {o.id for o in cat.children_of("stem_borers")}
    assert children == {"yellow_stem_borer", "striped_stem_borer", "pink_stem_borer"}
    assert cat.parent_of("pink_stem_borer").name_vi == "Sâu đục thân"


def test_search_finds_by_vietnamese_english_or_scientific_name():
    cat = load_catalogue()
    assert [o.id for o in cat.search("rầy nâu")][:1] == ["brown_planthopper"]
    assert "golden_apple_snail" in [o.id for o in cat.search("Pomacea")]
    assert "rice_blast" in [o.id for o in cat.search("blast")]


def test_duplicate_ids_are_refused():
    text = "organisms:" + ENTRY.format(id="a", advice_en="x") + ENTRY.format(id="a", advice_en="y")
    with pytest.raises(CatalogueError, match="twice"):
        parse_catalogue(text)


def test_missing_parent_is_refused():
    text = "organisms:" + ENTRY.format(id="a", advice_en="x") + "    parent: nowhere\n"
    with pytest.raises(CatalogueError, match="nowhere"):
        parse_catalogue(text)


def test_a_blank_language_is_refused():
    with pytest.raises(CatalogueError, match="blank"):
        parse_catalogue("organisms:" + ENTRY.format(id="a", advice_en="'  '"))


def test_unknown_id_suggests_the_closest():
    with pytest.raises(CatalogueError, match="brown_planthopper"):
        load_catalogue().get("brown_planthoper")


def test_cli_lists_one_organism_per_line_with_four_names():
    result = CliRunner().invoke(app, ["catalogue", "list"])
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(load_catalogue())
    assert "brown_planthopper\tRầy nâu\tbrown planthopper\tNilaparvata lugens" in lines


def test_cli_show_prints_advice():
    result = CliRunner().invoke(app, ["catalogue", "show", "wolf_spider"])
    assert result.exit_code == 0
    assert "Không phun thuốc" in result.stdout


def test_search_ignores_case_diacritics_and_unicode_form():
    import unicodedata

    from pestid.catalogue import fold, load_catalogue

    catalogue = load_catalogue()
    assert fold("Đạo ÔN") == fold(unicodedata.normalize("NFD", "đạo ôn")) == "dao on"
    for query in ("Rầy nâu", "ray nau", unicodedata.normalize("NFD", "Rầy nâu"), "brown planthopper"):
        assert "brown_planthopper" in [o.id for o in catalogue.search(query)], query
    assert catalogue.resolve("Rầy nâu") == ["brown_planthopper"]  # an exact name names one organism
    assert catalogue.resolve("rice_blast") == ["rice_blast"]
    assert "small_brown_planthopper" in catalogue.resolve("nâu")  # a fragment names every match


def test_search_means_the_diacritics_typed_and_short_text_only_at_a_word_start():
    """ "ốc" listed 26 entries (Ludwigia octovalvis, Eleocharis, Leptocorisa oratorius…); "rat" found the rice bug."""
    catalogue = load_catalogue()
    assert [o.id for o in catalogue.search("ốc")] == ["golden_apple_snail"]
    assert all("rat" in o.id for o in catalogue.search("rat")), [o.id for o in catalogue.search("rat")]
    assert "healthy_rice" in [o.id for o in catalogue.search("khoẻ")]  # no name spelt so: the folded search answers
    assert "rice_bug" in [o.id for o in catalogue.search("oratorius")]  # 4 letters or more: any part of a name


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("nhen", "spiders"),  # "nhện" is what people call a spider: the natural enemy, not the panicle mite
        ("chuon chuon", "dragonfly"),  # the exact name before the damselfly's "chuồn chuồn kim"
        ("ray nau", "brown_planthopper"),  # before "rầy nâu nhỏ"
        ("bac la", "bacterial_leaf_blight"),
        ("oc", "golden_apple_snail"),
    ],
)
def test_search_ranks_exact_then_prefix_then_substring(query, first):
    found = [o.id for o in load_catalogue().search(query)]
    assert found[0] == first, found


def test_search_puts_species_before_their_group():
    found = load_catalogue().search("ray")
    kinds = [o.kind for o in found]
    assert "group" in kinds and kinds.index("group") > max(i for i, k in enumerate(kinds) if k == "organism")


def test_catalogue_covers_at_least_a_hundred_harmful_organisms_and_groups():
    counts = load_catalogue().counts_by_category()
    assert sum(organisms + groups for organisms, groups in counts.values()) >= 100
    for category in ("insect", "mite", "fungus", "bacterium", "virus", "nematode", "mollusc", "rodent", "bird", "weed"):
        assert counts[Category(category)][0] >= 1, category  # every kind of harmful organism farmers meet
    cat = load_catalogue()
    named = "grassy_stunt ragged_stunt tungro yellow_dwarf orange_leaf root_knot_nematode white_tip_nematode"
    for oid in [*named.split(), "ufra_nematode", "barnyard_grass", "weedy_rice", "sprangletop", "tree_sparrow"]:
        assert oid in cat, oid


def test_every_entry_has_both_languages_signs_advice_and_a_source():
    for org in load_catalogue():
        for text in (org.name_vi, org.name_en, org.signs_vi, org.signs_en, org.advice_vi, org.advice_en, org.source):
            assert text.strip(), org.id
        assert org.signs_vi != org.signs_en and org.advice_vi != org.advice_en, org.id  # two languages, not one twice
        assert fold(org.advice_vi) != org.advice_vi.casefold(), org.id  # Vietnamese carries its diacritics


def test_unvouched_advice_sends_the_farmer_to_the_commune_officer_in_both_languages():
    unvouched = [org for org in load_catalogue() if not org.advice_vouched]
    assert len(unvouched) > 40  # most advice is general practice an officer should confirm
    for org in unvouched:
        assert fold(OFFICER_VI) in fold(org.advice_vi), org.id
        assert OFFICER_EN in org.advice_en, org.id


def test_unvouched_advice_that_does_not_name_the_officer_is_refused():
    entry = ENTRY.format(id="a", advice_en="Spray.").replace("    advice_vouched: true\n", "")
    with pytest.raises(CatalogueError, match="commune's plant-protection officer"):
        parse_catalogue("organisms:" + entry)
    officer = entry.replace("Không phun.", "Hỏi cán bộ bảo vệ thực vật xã.").replace(
        "Spray.", "Ask your commune's plant-protection officer."
    )
    assert not parse_catalogue("organisms:" + officer).get("a").advice_vouched


@pytest.mark.parametrize("missing", ["signs_vi", "signs_en", "source"])
def test_an_entry_without_signs_or_a_source_is_refused(missing):
    entry = "".join(line + "\n" for line in ENTRY.format(id="a", advice_en="x").splitlines()
                    if not line.strip().startswith(f"{missing}:"))  # fmt: skip
    with pytest.raises(CatalogueError, match=missing):
        parse_catalogue("organisms:" + entry)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ray nau", "brown_planthopper"),
        ("chuot", "lesser_rice_field_rat"),
        ("chuot dong", "rice_field_rat"),
        ("oc buou vang", "golden_apple_snail"),
        ("co long vuc", "barnyard_grass"),
        ("lua co", "weedy_rice"),
        ("tuyen trung", "root_knot_nematode"),
        ("chim", "scaly_breasted_munia"),
        ("lun vang", "yellow_dwarf"),
        ("Meloidogyne", "root_knot_nematode"),
    ],
)
def test_officers_find_new_entries_without_diacritics(query, expected):
    assert expected in [o.id for o in load_catalogue().search(query)], query


def test_a_group_is_known_to_a_model_that_knows_any_of_its_members():
    cat = load_catalogue()
    known = cat.known_to(["yellow_stem_borer", "rice_blast", "no_such_label"])
    assert {"yellow_stem_borer", "stem_borers", "caterpillars", "rice_blast", "fungal_leaf_spots"} == known
    assert cat.known_to([]) == set()


def test_cli_counts_entries_by_category_with_a_total():
    result = CliRunner().invoke(app, ["catalogue", "stats"])
    assert result.exit_code == 0, result.output
    counts = load_catalogue().counts_by_category()
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    for category, (organisms, groups) in counts.items():
        assert rows[category.value][:3] == [str(organisms), str(groups), str(organisms + groups)], category
    assert rows["total"][2] == str(len(load_catalogue()))
