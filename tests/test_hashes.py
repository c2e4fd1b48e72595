"""Identity hashes: one function (``io.identity_hash``) behind every stage, cache and
checkpoint key. A key's value names finished work in a run folder, so it must never move:
these pin values computed by hand (sha256 of the JSON text shown, first 16 hex digits)."""

from __future__ import annotations

from pathlib import Path

from reasonmaxxer.io import identity_hash
from reasonmaxxer.method.sampling import settings_hash
from reasonmaxxer.optim import scope_key

SETTINGS = {"seed": 0, "model": {"dtype": "float32", "name": "x"}, "n": [1, 2.5]}
# '{"model": {"dtype": "float32", "name": "x"}, "n": [1, 2.5], "seed": 0}'
SETTINGS_HASH = "802e9863a8ca4b54"


def test_keys_are_sha256_prefixes_of_sorted_json():
    assert identity_hash(SETTINGS) == SETTINGS_HASH
    assert settings_hash(SETTINGS) == SETTINGS_HASH  # sampling's chunk settings
    # the key order of the value does not matter
    assert identity_hash(dict(reversed(list(SETTINGS.items())))) == SETTINGS_HASH


def test_values_json_cannot_write_are_hashed_by_str():
    scope = ["train", Path("/a/b"), {"z": 1, "a": None}]
    # '["train", "/a/b", {"a": null, "z": 1}]'
    assert identity_hash(scope) == scope_key(scope) == "20f390ea28312d40"


def test_unsorted_keys_keep_their_own_values():
    # examples' and selection's keys were written without sort_keys: on lists it is moot,
    assert identity_hash(["p1", 3, [5, 7, 9], [0.25, 1.5]], sort_keys=False) == "339c47410b415d75"
    assert identity_hash(["p1", 3, [5, 7, 9], [0.25, 1.5]]) == "339c47410b415d75"
    # on a dict it is not: '{"z": 1, "a": 2}' vs '{"a": 2, "z": 1}'
    assert identity_hash({"z": 1, "a": 2}, sort_keys=False) == "9244ef0d94583ad1"
    assert identity_hash({"z": 1, "a": 2}) == "29297db50da03a30"
