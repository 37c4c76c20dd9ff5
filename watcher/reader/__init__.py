"""Reader stage: fetch feeds (and article pages), parse them into entries, import OPML."""
