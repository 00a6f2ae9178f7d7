"""The knowledge library: runbooks, known errors, how-tos and FAQs, written in chat or kept in git.

- ``articles``: the record. An article (KB-N) has a kind, a title, a Markdown body (a known error: symptom,
  workaround, cause and what fixes it), services, an owner, tags, the Prometheus alerts it answers, and a
  review interval (per kind in app.yaml ``knowledge``). States draft → published → retired; every edit is
  a new version with who and when; every state change is audited. Who may change one: its owner, the
  owners and teams of its services, and service managers; anyone may write a draft.
- ``commands``: the ``kb`` word: new (a Slack modal, a Teams card, or key=value), edit, publish, retire,
  history, show, search, share.
- ``sync``: ``svcbot kb sync DIR`` brings the library in line with a folder of Markdown files with YAML
  front matter; articles from git are edited there.
- ``search``: one function over the store's own full-text engine (SQLite FTS5 with bm25, PostgreSQL
  tsvector with websearch_to_tsquery), published articles only, with a snippet around the match.
"""
