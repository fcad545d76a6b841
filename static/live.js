/*
 * Live updates (docs/api.md §18): the page follows the change feed of what it shows, with
 * changes.js, so that the list and the open entry change as others write.
 *
 * List, then follow: the first page of a list carries `x-feedstore-seq` (read before the
 * listing), and the list follows `?_changes&e` of its key from there; a change is applied by
 * revision, so one the listing already showed changes nothing. A child created, updated or
 * deleted is added, redrawn or removed in place (a new one only where it falls on the page
 * shown). Listing again (after a save, a page turn) keeps the stream, and the changes it brought
 * past the new listing's seq are applied to it again: a listing read before a change must not
 * undo it. An open entry under the listed key is followed by the same stream; one elsewhere by a
 * stream of its own, from `_since=now`, then read again: a change or a deletion between the
 * editor's read and `now` has no event after it, so the second read tells it.
 *
 * The open entry, when someone else saves it: unchanged in the editor, it is read again; with
 * unsaved edits, a warning says who changed it, with Reload (take theirs) and Merge (save the
 * edits merged with theirs, ?_merge / Merge-Base), before a save would meet a conflict.
 *
 * A server without the change feed sends no `x-feedstore-seq`: then nothing here runs.
 */
(function ($) {
  'use strict';

  var page = window.feedstorePage;
  var changes = window.feedstoreChanges;
  var live = {list: null, listKey: null, entry: null, latest: {}, resetQuiet: false};

  function covers(top, key) {
    return top === '/' || key === top || key.indexOf(top + '/') === 0;
  }

  function setStatus(name) {
    $('#live-status').text(name === 'live' ? '● Live' : name === 'reconnecting' ?
      'Reconnecting…' : '').attr('data-state', name);
  }

  // -- following ---------------------------------------------------------------------------

  /** Whether stream sequence a ("<ms>-<n>") comes after b. */
  function after(a, b) {
    var x = a.split('-').map(Number);
    var y = b.split('-').map(Number);
    return x[0] > y[0] || (x[0] === y[0] && (x[1] || 0) > (y[1] || 0));
  }

  function followList(event, list, seq) {
    // A page turn or a save's reload keeps the stream; one given up (say a 401) starts again.
    if (live.list && !live.list.closed() && live.listKey === list.key) {
      replay(seq);
      return;
    }
    stopList();
    if (!seq) { return; }
    live.listKey = list.key;
    live.list = changes.follow(list.key, seq, {
      change: function (change) {
        live.resetQuiet = false;
        apply(change);
      },
      reset: function () {  // the changes since seq are no longer kept: list again
        stopList();
        // Once: if the new listing's seq is refused too, before any change came, listing
        // again would only loop; the list then stays as listed, not followed.
        if (live.resetQuiet) { return; }
        live.resetQuiet = true;
        page.reloadList();
      },
      state: setStatus
    });
    followEntry(null, page.state.open);
  }

  /** A new listing of the followed key: apply again what the stream brought after it was read
   * (all of it for a later page, which carries no seq; applying is by revision, so a change
   * the listing shows already changes nothing). */
  function replay(seq) {
    Object.keys(live.latest).forEach(function (key) {
      var change = live.latest[key];
      if (change.entry && (!seq || !change.seq || after(change.seq, seq))) { applyToList(change); }
    });
  }

  function stopList() {
    if (live.list) { live.list.close(); }
    live.list = null;
    live.listKey = null;
    setStatus('off');
  }

  /** The open entry needs a stream of its own when the list's doesn't cover it. */
  function followEntry(event, open) {
    var key = open && !open.isNew ? open.key : null;
    if (key && live.list && covers(live.listKey, key)) { key = null; }
    if (live.entry && !live.entry.closed() && live.entry.key === key) { check(); return; }
    if (live.entry) { live.entry.close(); }
    live.entry = null;
    if (!key || !live.list) { check(); return; }
    page.call('GET', page.dataUrl(key) + '?_changes&_since=now&l=1').then(function (d, t, xhr) {
      var seq = xhr.getResponseHeader('x-feedstore-seq');
      var still = page.state.open && page.state.open.key === key;
      if (!seq || !still || live.entry) { return; }
      live.entry = changes.follow(key, seq, {change: apply});
      // A save or a delete between the editor's read and `now` has no event after seq:
      // compare with the entry as it is now (who deleted it is not known then).
      var read = page.state.open.revision;
      page.call('GET', page.dataUrl(key) + '?e').then(function (data) {
        var entry = page.entriesOf(data)[0];
        // As of seq: the stream's changes come after it and supersede this one.
        note(entry ?
          {seq: seq, key: key, op: 'updated', revision: page.revisionOf(entry), by: writer(entry)} :
          {seq: seq, key: key, op: 'deleted', revision: read, by: null});
      });
    });
    check();
  }

  function writer(entry) {
    var by = null;
    (entry.author || []).forEach(function (author) {
      var match = /^urn:feedstore:(?:created|updated):(.*)$/.exec(author.uri || '');
      if (match) { by = match[1]; }
    });
    return by;
  }

  // -- applying a change -------------------------------------------------------------------

  function apply(change) {
    applyToList(change);
    note(change);
  }

  /** Remember the newest change of a key, in stream order (a key deleted and created again
   * starts its revisions again), and see what it means for the editor. */
  function note(change) {
    var known = live.latest[change.key];
    var newer = !known || !known.seq || !change.seq ? !known || change.revision > known.revision ||
      (change.revision === known.revision && change.op === 'deleted') :
      after(change.seq, known.seq);
    if (newer) { live.latest[change.key] = change; }
    check();
  }

  function applyToList(change) {
    var list = page.state.list;
    if (!live.list || page.parentOf(change.key) !== list.key || change.key === list.key) {
      return;
    }
    var $rows = $('#children tbody tr');
    var $row = $rows.filter(function () { return $(this).attr('data-key') === change.key; });
    var shown = $row.length ? parseInt($row.attr('data-revision'), 10) : null;
    if (change.op === 'deleted') {
      if ($row.length && shown <= change.revision) { $row.remove(); }
    } else if ($row.length) {
      if (change.revision > shown) {
        $row.replaceWith(page.listRow(change.entry).addClass('live'));
      }
    } else {
      insertRow(change, $rows, list);
    }
    page.renderListState();
    page.markOpenRow();
  }

  /** A new child goes where key order puts it, if that is on the page shown. */
  function insertRow(change, $rows, list) {
    var $after = $rows.filter(function () { return $(this).attr('data-key') > change.key; });
    var $row = page.listRow(change.entry).addClass('live');
    if ($after.length) {
      if ($after.first().is($rows.first()) && list.page > 0) { return; }  // an earlier page's
      $after.first().before($row);
    } else if (!list.next) {  // past the last row: only the last page shows it
      $('#children tbody').append($row);
    }
  }

  /** Compare the open entry with the newest change of its key. */
  function check() {
    var open = page.state.open;
    var change = open && !open.isNew ? live.latest[open.key] : null;
    var ahead = change && (change.revision > open.revision ||
      (change.op === 'deleted' && change.revision >= open.revision));
    if (!ahead) { hideWarning(); return; }
    if (page.state.busy || page.state.conflict) { return; }  // a save's answer decides
    if (change.op !== 'deleted' && !page.isDirty()) {
      page.openEntry(open.key, true).then(function () {
        var now = page.state.open;
        if (now && now.key === change.key) {
          page.notice(change.key + ' was changed by ' + page.principalName(change.by) +
            ': showing revision ' + now.revision + '.');
        }
      });
      return;
    }
    showWarning(change);
  }

  function showWarning(change) {
    var deleted = change.op === 'deleted';
    var by = change.by ? ' by ' + page.principalName(change.by) : '';
    $('#stale-text').text(deleted ?
      change.key + ' was deleted' + by + ' (revision ' + change.revision + ').' :
      change.key + ' was changed' + by + ' (revision ' + change.revision +
      ') since you opened it — reload or merge.');
    $('#stale').toggleClass('deleted', deleted).attr('data-revision', change.revision)
      .prop('hidden', false);
    $('#stale-merge').prop('hidden', deleted);
  }

  function hideWarning() { $('#stale').prop('hidden', true); }

  $(function () {
    $(document).on('feedstore:listed', followList);
    $(document).on('feedstore:opened', followEntry);
    $(document).on('feedstore:logout', function () {
      stopList();
      followEntry(null, null);
    });
    $('#stale-reload').on('click', function () {
      var key = page.state.open.key;
      if ($('#stale').hasClass('deleted')) {
        page.closeEditor();
        page.notice(key + ' was deleted.');
        return;
      }
      page.openEntry(key).then(function () {
        if (page.state.open) {
          page.notice('Reloaded ' + key + ': revision ' + page.state.open.revision + '.');
        }
      });
    });
    $('#stale-merge').on('click', function () { page.save(true); });
  });
}(jQuery));
