/*
 * Following the change feed (docs/api.md §18) over Server-Sent Events: an EventSource on
 * GET /d/<key>?_changes&e&_since=<seq>, read as changes of {seq, op, key, revision, by, entry}
 * (with `e` an item is the entry as stored now, so a list can show it without reading it).
 *
 * EventSource reconnects by itself when a stream ends or the network drops, sending the last
 * event's id as Last-Event-ID, so nothing is missed or repeated. It gives up when the server
 * answers with an error instead of a stream. Either way one plain request (`&l=1`, through
 * $.ajax, so a 401 brings up login.js's form) tells why: 410, the events since the seq are no
 * longer kept, calls `reset` (list again and follow from the new seq); 401 or another 4xx stops
 * (a login starts following again); anything else leaves EventSource trying, or when it gave
 * up tries again later, from the last seq seen.
 *
 * Browser SSE carries no Authorization header: with auth on it rides the session cookie.
 */
(function ($, window) {
  'use strict';

  var OPS = ['created', 'updated', 'deleted'];
  var AUTHOR = /^urn:feedstore:(created|updated|deleted):(.*)$/;
  var RETRY_FIRST_MS = 1000;
  var RETRY_MAX_MS = 30000;

  function dataUrl(key) {
    return key === '/' ? '/d/' : '/d' + key.split('/').map(encodeURIComponent).join('/');
  }

  /** A change item (an entry, or one in a feed) as {seq, op, key, revision, by, entry}. */
  function changeOf(event) {
    var data = JSON.parse(event.data);
    var entry = data && data.feed ? (data.feed.entry || [])[0] : data;
    if (!entry || typeof entry !== 'object') { return null; }
    var self = (entry.link || []).filter(function (link) { return link.___rel === 'self'; })[0];
    var id = String(entry.id || '');
    // With `e` the item is the current entry, its own categories first and the change's last.
    var category = (entry.category || []).filter(function (c) {
      return c.___scheme === 'urn:feedstore:change';
    }).pop();
    var by = null;
    (entry.author || []).forEach(function (author) {
      var match = AUTHOR.exec(author.uri || '');
      if (match) { by = match[2]; }
    });
    return {
      seq: event.lastEventId || (category && category.___label) || null,
      op: OPS.indexOf(event.type) >= 0 ? event.type : category && category.___term,
      key: self ? self.___href : id.slice(0, id.lastIndexOf(',')),
      revision: parseInt(id.slice(id.lastIndexOf(',') + 1), 10),
      by: by,
      entry: entry
    };
  }

  /**
   * Follow the changes of `key` and below from `since` (exclusive). `handlers.change(change)`
   * gets each change in order; `handlers.reset()` is called when the server no longer keeps the
   * changes since the last seq; `handlers.state(name)` hears 'live', 'reconnecting' or 'off'.
   * Returns {close(), key, seq(), closed()}: closed once given up (a 4xx) or closed.
   */
  function follow(key, since, handlers) {
    var seq = since;
    var source = null;
    var closed = false;
    var timer = null;
    var delay = RETRY_FIRST_MS;
    var tell = function (name) { if (handlers.state) { handlers.state(name); } };

    function url(extra) {
      return dataUrl(key) + '?_changes&e&_since=' + encodeURIComponent(seq) + (extra || '');
    }

    function onChange(event) {
      var change;
      try { change = changeOf(event); } catch (ignored) { change = null; }
      if (event.lastEventId) { seq = event.lastEventId; }
      if (change && change.key && !closed) { handlers.change(change); }
    }

    function open() {
      timer = null;
      if (closed) { return; }
      source = new window.EventSource(url());
      OPS.forEach(function (op) { source.addEventListener(op, onChange); });
      source.addEventListener('open', function () {
        delay = RETRY_FIRST_MS;
        tell('live');
      });
      source.addEventListener('error', function () {
        if (closed) { return; }
        if (source.readyState === window.EventSource.CLOSED) {
          source = null;
          diagnose(true);
        } else {
          // EventSource tries again itself, with Last-Event-ID. A stream that broke off (rather
          // than ending) may have met an error after its 200: ask too, so that a 410 re-lists.
          tell('reconnecting');
          diagnose(false);
        }
      });
    }

    /** The stream failed: one plain request says whether to re-list, stop, or go on trying
     * (`reopen`: open it again ourselves, as EventSource gave up). */
    function diagnose(reopen) {
      var asked = seq;
      $.ajax({url: url('&l=1'), type: 'GET', dataType: 'json'}).then(function () {
        if (reopen) { retry(); }
      }, function (xhr) {
        if (closed || asked !== seq) { return; }
        if (xhr.status === 410) {
          close();
          if (handlers.reset) { handlers.reset(); }
        } else if (xhr.status >= 400 && xhr.status < 500) {
          close();
        } else if (reopen) {
          retry();
        }
      });
    }

    function retry() {
      if (closed) { return; }
      tell('reconnecting');
      timer = window.setTimeout(open, delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }

    function close() {
      if (closed) { return; }
      closed = true;
      if (timer) { window.clearTimeout(timer); }
      if (source) { source.close(); }
      source = null;
      tell('off');
    }

    open();
    return {
      close: close, key: key,
      seq: function () { return seq; },
      closed: function () { return closed; }
    };
  }

  window.feedstoreChanges = {follow: follow, changeOf: changeOf};
}(jQuery, window));
