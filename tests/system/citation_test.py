"""LICENSE is the Apache License 2.0; CITATION.cff is CFF 1.2.0 and agrees
with the package (version, license) and credits the data and models used."""

import pathlib
import tomllib

import pytest

import rdmjax

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_license_is_apache_2():
  text = (ROOT / 'LICENSE').read_text()
  lines = [s.strip() for s in text.splitlines() if s.strip()]
  assert lines[:3] == [
    'Apache License',
    'Version 2.0, January 2004',
    'http://www.apache.org/licenses/',
  ]
  # The whole text: its nine sections and its end.
  for k, section in enumerate(
    [
      'Definitions',
      'Grant of Copyright License',
      'Grant of Patent License',
      'Redistribution',
      'Submission of Contributions',
      'Trademarks',
      'Disclaimer of Warranty',
      'Limitation of Liability',
      'Accepting Warranty or Additional Liability',
    ],
    1,
  ):
    assert f'{k}. {section}.' in text, section
  assert 'END OF TERMS AND CONDITIONS' in text


def _ids(reference):
  return [i['value'] for i in reference.get('identifiers', [])]


def test_citation_cff():
  yaml = pytest.importorskip('yaml')
  cff = yaml.safe_load((ROOT / 'CITATION.cff').read_text())
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  for key in ('cff-version', 'message', 'title', 'authors'):  # required
    assert cff.get(key), key
  assert cff['cff-version'] == '1.2.0'
  assert cff['title'] == project['name'] == 'rdmjax'
  assert cff['version'] == project['version'] == rdmjax.__version__
  assert cff['license'] == project['license']['text'] == 'Apache-2.0'
  assert cff['authors'] == [{'name': 'The rdmjax Authors'}]
  refs = cff['references']

  def ref(ident):
    """The one reference with this DOI or identifier."""
    found = [r for r in refs if ident in (r.get('doi'), *_ids(r))]
    assert len(found) == 1, ident
    return found[0]

  nsd = ref('10.1038/s41593-021-00962-x')
  algonauts = ref('arXiv:2301.03198')
  clip = ref('arXiv:2103.00020')
  assert (nsd['journal'], nsd['volume'], nsd['start'], nsd['end']) == (
    'Nature Neuroscience',
    25,
    116,
    126,
  )
  assert nsd['authors'][0]['family-names'] == 'Allen'
  assert 'Algonauts Project 2023' in algonauts['title']
  assert algonauts['authors'][0]['family-names'] == 'Gifford'
  assert clip['authors'][0]['family-names'] == 'Radford'
  assert 'Natural Language Supervision' in clip['title']
  for r in refs:
    assert r['type'] and r['title'] and r['authors'] and r['year'], r
