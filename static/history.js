/*
 * The editor's History tab (docs/api.md §17): the open entry's revisions, newest first, from
 * GET ?_history a page at a time, with who saved each and which fields it changed; one shown as
 * JSON; and Restore, which is PUT ?_revert=<n> with If-Match on the revision open, so a restore
 * is revision-checked as every save of the page. Kept revisions exist only under a history
 * prefix (FEEDSTORE_HISTORY); elsewhere the tab shows the current revision and says so.
 *
 * app.js triggers `feedstore:history` on document with the open entry when the tab shows.
 */
(function ($) {
  'use strict';

  var page = window.feedstorePage;
  var PAGE_SIZE = 20;
  var WRITER = /^urn:feedstore:(created|updated):(.*)$/;
  var shown = {key: null, revision: null, entries: [], next: null, viewed: null, request: 0};

  /** Who saved a revision: its `urn:feedstore:updated:<principal>` author, or for the first
   * revision (which has none) its `urn:feedstore:created:<principal>` one. */
  function savedBy(entry) {
    var found = {};
    (entry.author || []).forEach(function (author) {
      var match = WRITER.exec(author.uri || '');
      if (match) { found[match[1]] = match[2]; }
    });
    return page.principalName(found.updated !== undefined ? found.updated : found.created);
  }

  /** The top-level fields that differ between two revisions (the server's own left out). */
  function changedFields(older, newer) {
    var before = page.editable(older);
    var after = page.editable(newer);
    var names = Object.keys(before).concat(Object.keys(after).filter(function (name) {
      return !Object.prototype.hasOwnProperty.call(before, name);
    }));
    return names.filter(function (name) { return !page.same(before[name], after[name]); });
  }

  function show(event, open) {
    if (!open || open.isNew) { return; }
    shown = {
      key: open.key, revision: open.revision, entries: [], next: null, viewed: null,
      request: shown.request + 1
    };
    $('#history-table tbody').empty();
    $('#history-table, #history-more, #history-view').prop('hidden', true);
    $('#history-status').text('Loading the revisions of ' + open.key + '…');
    load(null);
  }

  function load(cursor) {
    var request = shown.request;
    var url = page.dataUrl(shown.key) + '?_history&l=' + PAGE_SIZE +
      (cursor ? '&p=' + encodeURIComponent(cursor) : '');
    return page.call('GET', url).then(function (data, text, xhr) {
      if (request !== shown.request) { return; }
      shown.entries = shown.entries.concat(page.entriesOf(data));
      shown.next = xhr.getResponseHeader('x-vtecx-nextpage');
      render();
    }, function (xhr) {
      if (request !== shown.request) { return; }
      $('#history-status').text('Could not read the history: ' + page.errorMessage(xhr));
    });
  }

  function render() {
    var entries = shown.entries;
    var $body = $('#history-table tbody').empty();
    entries.forEach(function (entry, i) {
      var revision = page.revisionOf(entry);
      var older = entries[i + 1];
      var changed = older ? changedFields(older, entry) : null;
      var $row = $('<tr>').attr('data-revision', revision)
        .toggleClass('viewed', shown.viewed === revision);
      $('<td class="num">').text(revision).appendTo($row);
      $('<td class="when">').append(page.timeElement(entry.updated)).appendTo($row);
      $('<td class="by">').text(savedBy(entry)).appendTo($row);
      $('<td class="changed-fields">').text(changed === null ?
        (revision === 1 ? 'created' : '') : changed.join(', ') || 'nothing').appendTo($row);
      var $actions = $('<td class="actions-cell">').appendTo($row);
      $actions.append($('<button type="button" class="small quiet view-revision">')
        .append('View', $('<span class="visually-hidden">').text(' revision ' + revision)));
      if (revision === shown.revision) {
        $actions.append(' ', $('<span class="hint">').text('current'));
      } else {
        $actions.append(' ', $('<button type="button" class="small restore-revision">')
          .append('Restore…', $('<span class="visually-hidden">').text(' revision ' + revision)));
      }
      $body.append($row);
    });
    $('#history-table').prop('hidden', entries.length === 0);
    $('#history-more').prop('hidden', !shown.next);
    var kept = entries.filter(function (entry) {
      return page.revisionOf(entry) !== shown.revision;
    }).length;
    $('#history-status').text(kept || shown.next ?
      'Revisions of ' + shown.key + ', newest first. Restore saves an old one as a new revision.' :
      'No earlier revision of ' + shown.key + ' is kept: history is kept only under the ' +
      'prefixes the server names (FEEDSTORE_HISTORY).');
  }

  function entryAt(revision) {
    return shown.entries.filter(function (entry) {
      return page.revisionOf(entry) === revision;
    })[0];
  }

  function view(revision) {
    var entry = entryAt(revision);
    shown.viewed = revision;
    render();
    var current = page.state.open && page.state.open.base;
    var changed = current ? changedFields(entry, current) : [];
    $('#history-view-title').text('Revision ' + revision + ' of ' + shown.key);
    $('#history-view-diff').text(revision === shown.revision ? 'The current revision.' :
      changed.length ? 'Differs from the current revision in ' + changed.join(', ') + '.' :
        'Its fields are those of the current revision.');
    $('#history-view-json').text(JSON.stringify(entry, null, 2));
    $('#history-view').prop('hidden', false);
    $('#history-view-title').trigger('focus');
  }

  function askRestore(revision) {
    $('#confirm-restore-rev').text(revision);
    $('#confirm-restore-key').text(shown.key);
    $('#confirm-restore-dirty').text(page.isDirty() ? 'Your unsaved changes are dropped.' : '');
    $('#confirm-restore').attr('data-revision', revision);
    document.getElementById('confirm-restore').showModal();
  }

  function restore(revision) {
    var open = page.state.open;
    var key = open.key;
    page.busy(true);
    page.call('PUT', page.dataUrl(key) + '?_revert=' + revision, {
      headers: {'If-Match': '"' + open.revision + '"'}
    }).then(function () {
      return page.openEntry(key);
    }).then(function () {
      var now = page.state.open;
      page.notice('Restored revision ' + revision + ' of ' + key + ' as revision ' +
        (now ? now.revision : '?') + '.');
      page.reloadList();
    }, function (xhr) {
      if (!xhr || !xhr.status) { return; }
      var conflict = page.conflictOf(xhr);
      page.showError('Not restored: ' + (conflict ?
        key + ' was saved by someone else since you opened it (now revision ' +
        page.revisionOf(conflict.current) + '). Reload it first.' : page.errorMessage(xhr)));
    }).always(function () { page.busy(false); });
  }

  $(function () {
    $(document).on('feedstore:history', show);
    $('#history-more').on('click', function () { load(shown.next); });
    $('#history-table').on('click', 'button.view-revision', function () {
      view(parseInt($(this).closest('tr').attr('data-revision'), 10));
    }).on('click', 'button.restore-revision', function () {
      askRestore(parseInt($(this).closest('tr').attr('data-revision'), 10));
    });
    $('#confirm-restore').on('close', function () {
      if (this.returnValue === 'restore') {
        restore(parseInt($(this).attr('data-revision'), 10));
      }
      this.returnValue = '';
    });
  });
}(jQuery));
