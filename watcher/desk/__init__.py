"""The analyst's desk: a web view of stories, alerts and feeds, story feeds (Atom, JSON
Feed), a JSON API and a rule playground, served by `watcher run` on `[watcher] web`.

    desk = await watcher.desk.start(config, store)   # DeskError says why it cannot
    ...
    desk.reload(new_config)                          # after a config reload
    await desk.close()
"""

from watcher.desk.app import Desk, DeskError, start

__all__ = ["Desk", "DeskError", "start"]
