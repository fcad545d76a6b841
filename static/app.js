/*
 * feedstore's page: browse the children of a key, open an entry, edit it as a form or as JSON,
 * create and delete entries, save a stale edit merged (?_merge, Merge-Base) when asked, and
 * resolve a 409/412 as a conflict (base, yours and theirs; a merge_conflict's fields marked).
 * The conflict view is conflict.js, the History tab history.js, live updates from the change
 * feed live.js (over changes.js); they reach this file's functions through window.feedstorePage
 * and its `feedstore:*` events.
 *
 * Every request goes through jQuery's $.ajax the way vte.cx pages call it: dataType 'json', the
 * body JSON.stringify(feed), no explicit contentType (jQuery sends its form type and the server
 * sniffs the JSON), and jQuery's own X-Requested-With header for the CSRF guard. Answers are read
 * in either JSON style the server may use (docs/api.md §2.3): entries in a feed, or bare.
 */
(function ($) {
  'use strict';

  var SERVER_FIELDS = ['id', 'published', 'updated', 'author'];
  var TABS = ['form', 'json', 'history'];
  var NEW_FIELD_TYPES = ['string', 'number', 'boolean', 'object', 'array'];

  var state = {
    schema: null,
    list: {key: '/', cursors: [null], page: 0, next: null},
    open: null,       // the entry in the editor: key, revision, base (as read), mine (as edited)
    conflict: null,   // the refused save: mine, theirs (error.current), base, method
    tab: 'form',
    busy: false
  };
  var fieldIds = 0;

  // -- the API, as vte.cx pages call it -------------------------------------------------------

  function dataUrl(key) {
    return key === '/' ? '/d/' : '/d' + key.split('/').map(encodeURIComponent).join('/');
  }

  function call(type, url, settings) {
    return $.ajax($.extend({url: url, type: type, dataType: 'json'}, settings));
  }

  function feedOf(entry) {
    return JSON.stringify({feed: {entry: [entry]}});
  }

  var api = {
    schema: function () { return call('GET', '/d/_schema'); },
    list: function (key, limit, cursor) {
      var query = '?f&l=' + limit + (cursor ? '&p=' + encodeURIComponent(cursor) : '');
      return call('GET', dataUrl(key) + query);
    },
    read: function (key) { return call('GET', dataUrl(key) + '?e'); },
    create: function (url, entry) { return call('POST', url, {data: feedOf(entry)}); },
    /** PUT of the whole entry; `merge` asks the server to merge a stale one (§17.5). */
    put: function (entry, merge) {
      return call('PUT', merge ? '/d/?_merge' : '/d/', {data: feedOf(entry)});
    },
    /** PATCH with If-Match, or with Merge-Base when `merge`: a stale base is then merged. */
    patch: function (key, fields, revision, merge) {
      var header = merge ? 'Merge-Base' : 'If-Match';
      var headers = {};
      headers[header] = '"' + revision + '"';
      return call('PATCH', dataUrl(key), {data: feedOf(fields), headers: headers});
    },
    remove: function (key, revision) { return call('DELETE', dataUrl(key) + '?r=' + revision); }
  };

  /**
   * The entries of an answer, in either JSON style (docs/api.md §2.3): a feed {feed: {entry}},
   * or bare, as vte.cx answers: an array of entries, or one entry object. No answer (204): none.
   */
  function entriesOf(data) {
    if (!data) { return []; }
    if (Array.isArray(data)) { return data; }
    if (data.feed && Object.keys(data).length === 1) { return data.feed.entry || []; }
    return [data];
  }

  /** The error body of a failed request: {feed: {title}, error: {...}}, or null. */
  function errorBody(xhr) {
    if (xhr.responseJSON) { return xhr.responseJSON; }
    try { return JSON.parse(xhr.responseText); } catch (ignored) { return null; }
  }

  function errorMessage(xhr) {
    var body = errorBody(xhr);
    if (body && body.feed && body.feed.title) { return body.feed.title; }
    return xhr.status ? 'The server answered ' + xhr.status + '.' : 'The server did not answer.';
  }

  /**
   * A refused save that carries the stored entry: shown as a conflict, not as an error. A merge
   * the server could not make (merge_conflict) also names the fields both sides changed, each
   * with its base, current and yours (docs/api.md §17.5).
   */
  function conflictOf(xhr) {
    var body = errorBody(xhr);
    var error = body && body.error;
    var codes = ['revision_conflict', 'precondition_failed', 'merge_conflict', 'merge_base_gone'];
    if ((xhr.status === 409 || xhr.status === 412) && error && codes.indexOf(error.code) >= 0 &&
        isObject(error.current)) {
      return {
        message: body.feed.title, current: error.current, code: error.code,
        conflicts: Array.isArray(error.conflicts) ? error.conflicts : []
      };
    }
    return null;
  }

  // -- values, paths and the schema -----------------------------------------------------------

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  /** JSON with sorted keys, so that equal values compare equal. */
  function canonical(value) {
    if (Array.isArray(value)) { return '[' + value.map(canonical).join(',') + ']'; }
    if (isObject(value)) {
      return '{' + Object.keys(value).sort().map(function (name) {
        return JSON.stringify(name) + ':' + canonical(value[name]);
      }).join(',') + '}';
    }
    return value === undefined ? 'undefined' : JSON.stringify(value);
  }

  function same(a, b) { return canonical(a) === canonical(b); }

  function selfKey(entry) {
    var self = (entry.link || []).filter(function (link) { return link.___rel === 'self'; })[0];
    return self ? self.___href : null;
  }

  function revisionOf(entry) {
    var id = String(entry.id || '');
    return parseInt(id.slice(id.lastIndexOf(',') + 1), 10);
  }

  function parentOf(key) {
    var cut = key.lastIndexOf('/');
    return cut <= 0 ? '/' : key.slice(0, cut);
  }

  function joinKey(parent, name) { return (parent === '/' ? '' : parent) + '/' + name; }

  /** The editable part of an entry: everything but the server's fields. */
  function editable(entry) {
    var fields = {};
    Object.keys(entry).forEach(function (name) {
      if (SERVER_FIELDS.indexOf(name) < 0) { fields[name] = clone(entry[name]); }
    });
    return fields;
  }

  /*
   * A path is a list of steps: a name (object member), a number (list position, in the form) or
   * {key, value} (the item of a keyed list whose merge key has that value, in the conflict view).
   */
  function step(value, part) {
    if (isObject(part)) {
      if (!Array.isArray(value)) { return undefined; }
      return value.filter(function (item) {
        return isObject(item) && item[part.key] === part.value;
      })[0];
    }
    if (typeof part === 'number') { return Array.isArray(value) ? value[part] : undefined; }
    return isObject(value) && Object.prototype.hasOwnProperty.call(value, part) ?
      value[part] : undefined;
  }

  function getAt(root, path) {
    return path.reduce(function (value, part) { return step(value, part); }, root);
  }

  /** Set the value at path (creating objects on the way); undefined removes it. */
  function setAt(root, path, value) {
    var parent = root;
    for (var i = 0; i < path.length - 1; i++) {
      var next = step(parent, path[i]);
      if (next === undefined || typeof next !== 'object' || next === null) {
        next = isObject(path[i + 1]) || typeof path[i + 1] === 'number' ? [] : {};
        assign(parent, path[i], next);
      }
      parent = next;
    }
    assign(parent, path[path.length - 1], value);
  }

  function assign(container, part, value) {
    if (isObject(part)) {
      var at = container.findIndex(function (item) {
        return isObject(item) && item[part.key] === part.value;
      });
      if (value === undefined) {
        if (at >= 0) { container.splice(at, 1); }
      } else if (at >= 0) {
        container[at] = value;
      } else {
        container.push(value);
      }
    } else if (typeof part === 'number') {
      if (value === undefined) { container.splice(part, 1); } else { container[part] = value; }
    } else if (value === undefined) {
      delete container[part];
    } else {
      container[part] = value;
    }
  }

  function pathLabel(path) {
    return path.reduce(function (text, part) {
      if (isObject(part)) { return text + '[' + part.key + '=' + part.value + ']'; }
      if (typeof part === 'number') { return text + '[' + part + ']'; }
      return text ? text + '.' + part : part;
    }, '');
  }

  /** How a member is shown: `___href` is the attribute @href, `______text` the element's text. */
  function displayName(name) {
    if (name === '______text') { return 'text'; }
    return name.indexOf('___') === 0 ? '@' + name.slice(3) : name;
  }

  function childSchema(node, part) {
    if (!isObject(node)) { return null; }
    if (typeof part === 'number' || isObject(part)) {
      return isObject(node.items) ? node.items : null;
    }
    return isObject(node.properties) && isObject(node.properties[part]) ?
      node.properties[part] : null;
  }

  function schemaAt(path) {
    return path.reduce(function (node, part) { return childSchema(node, part); }, state.schema);
  }

  function schemaType(node) {
    if (!node) { return null; }
    var type = node.type;
    if (Array.isArray(type)) { type = type.filter(function (t) { return t !== 'null'; })[0]; }
    return type || (node.properties ? 'object' : null);
  }

  function mergeKey(node) {
    return node && typeof node['x-merge-key'] === 'string' ? node['x-merge-key'] : null;
  }

  /** Whether an object at this schema node may hold members the schema doesn't declare. */
  function isOpen(node, atRoot) {
    return atRoot || !node || !isObject(node.properties) || !!node.additionalProperties;
  }

  function kindOf(value, node) {
    if (Array.isArray(value)) { return 'array'; }
    if (isObject(value)) { return 'object'; }
    if (typeof value === 'boolean') { return 'boolean'; }
    if (typeof value === 'number') { return schemaType(node) === 'integer' ? 'integer' : 'number'; }
    if (typeof value === 'string') { return 'string'; }
    return schemaType(node) || 'null';
  }

  /** A new value for a field or list item: the schema's default, or an empty one of its type. */
  function newValue(node, type) {
    if (node && node['default'] !== undefined) { return clone(node['default']); }
    switch (type || schemaType(node) || 'string') {
      case 'object': return {};
      case 'array': return [];
      case 'integer': case 'number': return 0;
      case 'boolean': return false;
      default: return '';
    }
  }

  // -- saving: PUT of the whole entry, or PATCH of what changed --------------------------------

  /**
   * The feedstore merge patch that turns base into mine: changed members, null for removed ones,
   * nested objects recursively, keyed lists item by item (each item named by its merge key, so
   * items left out are removed), other lists whole.
   */
  function patchOf(base, mine, node, atRoot) {
    var patch = {};
    Object.keys(mine).forEach(function (name) {
      if (atRoot && SERVER_FIELDS.indexOf(name) >= 0) { return; }
      var before = base[name];
      var after = mine[name];
      var child = childSchema(node, name);
      if (same(before, after)) { return; }
      if (isObject(before) && isObject(after)) {
        patch[name] = patchOf(before, after, child, false);
      } else if (Array.isArray(before) && Array.isArray(after) && mergeKey(child)) {
        patch[name] = keyedListPatch(before, after, child);
      } else {
        patch[name] = clone(after);
      }
    });
    Object.keys(base).forEach(function (name) {
      if (atRoot && SERVER_FIELDS.indexOf(name) >= 0) { return; }
      if (!Object.prototype.hasOwnProperty.call(mine, name)) { patch[name] = null; }
    });
    return patch;
  }

  function keyedListPatch(before, after, node) {
    var key = mergeKey(node);
    return after.map(function (item) {
      var old = isObject(item) ? step(before, {key: key, value: item[key]}) : undefined;
      if (!isObject(old)) { return clone(item); }
      var itemPatch = patchOf(old, item, node.items, false);
      itemPatch[key] = item[key];
      return itemPatch;
    });
  }

  /** Top-level fields the base has and mine doesn't: a PUT can't remove them, a PATCH can. */
  function removedFields(base, mine) {
    return Object.keys(base).filter(function (name) {
      return SERVER_FIELDS.indexOf(name) < 0 && !Object.prototype.hasOwnProperty.call(mine, name);
    });
  }

  function putBody(key, revision, mine) {
    var entry = editable(mine);
    var links = Array.isArray(entry.link) ? entry.link : [];
    if (!links.some(function (link) { return link.___rel === 'self'; })) {
      links = [{___href: key, ___rel: 'self'}].concat(links);
    }
    entry.link = links;
    entry.id = key + ',' + revision;
    return entry;
  }

  /**
   * Save `mine` over `base` (the entry at `revision`) with the chosen method. PUT sends the whole
   * entry with the id it read; PATCH sends only what changed, with If-Match. A PUT that would have
   * to remove a top-level field is sent as a PATCH, because a PUT keeps the fields it leaves out.
   */
  function write(target) {
    var method = target.method;
    var removed = removedFields(target.base, target.mine);
    var note = '';
    if (method === 'PUT' && removed.length) {
      method = 'PATCH';
      note = ' A PUT keeps the fields it leaves out, so removing ' + removed.join(', ') +
        ' went as a PATCH.';
    }
    if (same(editable(target.base), editable(target.mine))) {
      openLoaded(target.base);
      notice('No changes to save in ' + target.key + '.');
      return;
    }
    var request;
    var merged = null;  // x-feedstore-merged: the base revision the server merged from
    if (method === 'PUT') {
      request = api.put(putBody(target.key, target.revision, target.mine), target.merge)
        .then(function (data, text, xhr) {
          merged = xhr.getResponseHeader('x-feedstore-merged');
          return api.read(target.key);
        });
    } else {
      var fields = patchOf(target.base, target.mine, state.schema, true);
      request = api.patch(target.key, fields, target.revision, target.merge)
        .then(function (data, text, xhr) {
          merged = xhr.getResponseHeader('x-feedstore-merged');
          return data;
        });
    }
    busy(true);
    request.then(function (data) {
      var entry = entriesOf(data)[0];
      openLoaded(entry);
      notice('Saved ' + target.key + ' as revision ' + revisionOf(entry) + ' (' + method + ').' +
        (merged ? ' Your changes to revision ' + target.revision + ' were merged with those ' +
          'saved since.' : '') + note);
      reloadList();
    }, function (xhr) {
      var conflict = conflictOf(xhr);
      if (conflict) {
        page.showConflict(target, conflict, method, xhr.status);  // conflict.js
      } else {
        showError('Not saved: ' + errorMessage(xhr));
      }
    }).always(function () { busy(false); });
  }

  /** Save the open entry; `merge` (or the Merge box) asks the server to merge a stale save. */
  function save(merge) {
    var open = state.open;
    if (!open || state.busy || !readyToSave()) { return; }
    if (open.isNew) { create(); return; }
    write({
      key: open.key, revision: open.revision, base: open.base, mine: clone(open.mine),
      method: $('input[name="save-mode"]:checked').val(),
      merge: merge === true || $('#merge-stale').prop('checked')
    });
  }

  function readyToSave() {
    if (state.tab === 'json' && !readJson()) {
      showError('Not saved: the JSON is not valid. ' + $('#json-error').text());
      $('#raw-json').trigger('focus');
      return false;
    }
    var invalid = Object.keys(state.open.invalid);
    if (invalid.length) {
      showError('Not saved: fix ' + invalid.join(', ') + ' first.');
      $('#fields [aria-invalid="true"]').first().trigger('focus');
      return false;
    }
    return true;
  }

  function create() {
    var open = state.open;
    var name = $.trim($('#new-key').val());
    var entry = editable(open.mine);
    if (entry.title === '') { delete entry.title; }
    var url = dataUrl(open.parent);
    var key = null;
    if (name) {
      key = name.charAt(0) === '/' ? name : joinKey(open.parent, name);
      entry.link = [{___href: key, ___rel: 'self'}].concat((entry.link || []).filter(function (l) {
        return l.___rel !== 'self';
      }));
      url = '/d/';
    } else if (open.parent === '/') {
      showError('Not created: a key is needed at the top level.');
      $('#new-key').trigger('focus');
      return;
    }
    busy(true);
    api.create(url, entry).then(function (data) {
      key = data.feed.title;
      return api.read(key);
    }).then(function (data) {
      openLoaded(entriesOf(data)[0]);
      notice('Created ' + key + '.');
      reloadList();
    }, function (xhr) {
      showError('Not created: ' + errorMessage(xhr));
    }).always(function () { busy(false); });
  }

  function remove() {
    var open = state.open;
    busy(true);
    api.remove(open.key, open.revision).then(function () {
      closeEditor();
      notice('Deleted ' + open.key + '.');
      reloadList();
    }, function (xhr) {
      var conflict = conflictOf(xhr);
      if (conflict) {
        showError('Not deleted: ' + open.key + ' was saved by someone else since you opened it ' +
          '(now revision ' + revisionOf(conflict.current) + '). Reload it to see the change.');
      } else {
        showError('Not deleted: ' + errorMessage(xhr));
      }
    }).always(function () { busy(false); });
  }

  // -- the list ----------------------------------------------------------------------------------

  function pageSize() { return parseInt($('#page-size').val(), 10); }

  function browse(key) {
    state.list = {key: key, cursors: [null], page: 0, next: null};
    $('#goto-key').val(key);
    updateHash();
    return reloadList();
  }

  function reloadList() {
    var list = state.list;
    return api.list(list.key, pageSize(), list.cursors[list.page]).then(function (data, text, xhr) {
      if (list !== state.list) { return; }
      list.next = xhr.getResponseHeader('x-vtecx-nextpage');
      renderList(entriesOf(data));
      // live.js follows the change feed from the sequence the first page carries (§18).
      $(document).trigger('feedstore:listed', [list, xhr.getResponseHeader('x-feedstore-seq')]);
    }, function (xhr) {
      if (list !== state.list || xhr.status === 401) { return; }  // 401: login.js asks to log in
      if (xhr.status === 403) {  // shown where the children would be
        list.next = null;
        renderList([], errorMessage(xhr) + ' You may not list ' + list.key + '.');
        return;
      }
      showError('Could not list ' + list.key + ': ' + errorMessage(xhr));
    });
  }

  function turnPage(delta) {
    var list = state.list;
    if (delta > 0) {
      if (!list.next) { return; }
      list.cursors[list.page + 1] = list.next;
    }
    list.page = Math.max(0, list.page + delta);
    reloadList().then(function () { $(delta > 0 ? '#next-page' : '#prev-page').trigger('focus'); });
  }

  function renderList(entries, emptyText) {
    var list = state.list;
    var $body = $('#children tbody').empty();
    entries.forEach(function (entry) { $body.append(listRow(entry)); });
    $('#list-key').text(list.key);
    renderListState(emptyText);
    renderBreadcrumb(list.key);
    markOpenRow();
  }

  /** The row of one child in the list. */
  function listRow(entry) {
    var key = selfKey(entry);
    var name = key.slice(key.lastIndexOf('/') + 1);
    var $row = $('<tr>').attr({'data-key': key, 'data-revision': revisionOf(entry)});
    $('<th scope="row">').append(
      $('<a class="open-entry">').attr({href: hashFor(state.list.key, key), title: key}).text(name)
    ).appendTo($row);
    $('<td class="title">').text(typeof entry.title === 'string' ? entry.title : '')
      .appendTo($row);
    $('<td class="num">').text(revisionOf(entry)).appendTo($row);
    $('<td class="when">').append(timeElement(entry.updated)).appendTo($row);
    $('<td class="browse">').append(
      $('<button type="button" class="quiet browse-children">').append('Children',
        $('<span class="visually-hidden">').text(' of ' + key), ' ›')
    ).appendTo($row);
    return $row;
  }

  /** The empty state, page numbers and pager of the list as its rows now are. */
  function renderListState(emptyText) {
    var list = state.list;
    var count = $('#children tbody tr').length;
    $('#children').prop('hidden', count === 0);
    $('#list-empty').prop('hidden', count > 0).text(emptyText || 'No children.')
      .toggleClass('denied', Boolean(emptyText));
    var first = list.page * pageSize() + 1;
    $('#page-info').text(count ?
      'Page ' + (list.page + 1) + ' · ' + first + '–' + (first + count - 1) :
      'Page ' + (list.page + 1));
    $('#prev-page').prop('disabled', list.page === 0);
    $('#next-page').prop('disabled', !list.next);
  }

  function renderBreadcrumb(key) {
    var $crumbs = $('#breadcrumb').empty();
    var parts = key === '/' ? [] : key.slice(1).split('/');
    var keys = ['/'].concat(parts.map(function (part, i) {
      return '/' + parts.slice(0, i + 1).join('/');
    }));
    keys.forEach(function (crumb, i) {
      var label = i === 0 ? 'root' : parts[i - 1];
      var $item = $('<li>');
      if (crumb === key) {
        $item.append($('<span aria-current="location">').text(label));
      } else {
        $item.append($('<a class="crumb">').attr({href: hashFor(crumb, null), 'data-key': crumb})
          .text(label));
      }
      $crumbs.append($item);
    });
  }

  function markOpenRow() {
    var key = state.open && state.open.key;
    $('#children tbody tr').each(function () {
      var current = $(this).attr('data-key') === key;
      $(this).toggleClass('current', current);
      $(this).find('a.open-entry').attr('aria-current', current ? 'true' : null);
    });
  }

  /** A principal (a writer in an author URI) as people read it: the logged-in user's account
   * (login.js keeps its uid on #whoami), `uid 7`, or `anonymous`. */
  function principalName(principal) {
    if (principal === null || principal === undefined || principal === '') { return '?'; }
    if (principal === $('#whoami').attr('data-uid')) { return $('#whoami').attr('data-account'); }
    return /^\d+$/.test(principal) ? 'uid ' + principal : principal;
  }

  function timeElement(iso) {
    if (!iso) { return $('<span>'); }
    var date = new Date(iso);
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    var text = isNaN(date) ? iso : date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' +
      pad(date.getDate()) + ' ' + pad(date.getHours()) + ':' + pad(date.getMinutes());
    return $('<time>').attr({datetime: iso, title: iso}).text(text);
  }

  // -- the editor --------------------------------------------------------------------------------

  /** Read and open the entry at key; `quiet` leaves the focus where it is (a live reload). */
  function openEntry(key, quiet) {
    return api.read(key).then(function (data) {
      if (!data) {
        showError('There is no entry at ' + key + '.');
        return;
      }
      openLoaded(entriesOf(data)[0]);
      if (!quiet) { $('#editor-title').trigger('focus'); }
    }, function (xhr) {
      showError('Could not open ' + key + ': ' + errorMessage(xhr));
    });
  }

  function openLoaded(entry) {
    state.open = {
      key: selfKey(entry), isNew: false, revision: revisionOf(entry),
      base: clone(entry), mine: clone(entry), invalid: {}
    };
    state.conflict = null;
    renderEditor();
    updateHash();
    markOpenRow();
    $(document).trigger('feedstore:opened', [state.open]);
  }

  function openNew(parent) {
    state.open = {key: null, parent: parent, isNew: true, base: {}, mine: {title: ''}, invalid: {}};
    state.conflict = null;
    $(document).trigger('feedstore:opened', [null]);
    renderEditor();
    $('#new-key').val('').trigger('focus');
  }

  function closeEditor() {
    state.open = null;
    state.conflict = null;
    $(document).trigger('feedstore:opened', [null]);
    $('#entry-view, #conflict').prop('hidden', true);
    $('#placeholder').prop('hidden', false);
    updateHash();
    markOpenRow();
  }

  function renderEditor() {
    var open = state.open;
    $('#placeholder, #conflict').prop('hidden', true);
    $('#entry-view').prop('hidden', false);
    $('#entry-key').text(open.isNew ? 'New entry under ' + open.parent : open.key);
    $('#revision').text(open.isNew ? 'not saved yet' : 'revision ' + open.revision);
    $('#new-key-row').prop('hidden', !open.isNew);
    if (open.isNew) {
      $('#new-key-prefix').text(open.parent === '/' ? '/' : open.parent + '/');
      $('#new-key-help').text(open.parent === '/' ?
        'Required at the top level.' :
        'Leave it empty to number the entry: ' + joinKey(open.parent, '1') + ', ' +
        joinKey(open.parent, '2') + ', …');
    }
    $('#save-mode').prop('hidden', open.isNew);
    $('#save').text(open.isNew ? 'Create' : 'Save');
    $('#reload, #delete, #tab-history').prop('hidden', open.isNew);
    if (open.isNew && state.tab === 'history') { selectTab('form'); }
    renderMeta(open.base);
    renderForm();
    if (state.tab === 'json') { fillJson(); }
    if (state.tab === 'history') { showHistory(); }
    markChanges();
  }

  function renderMeta(entry) {
    var $meta = $('#meta').empty().prop('hidden', !entry.id);
    var add = function (term, $value) {
      $meta.append($('<div>').append($('<dt>').text(term), $('<dd>').append($value)));
    };
    if (!entry.id) { return; }
    add('id', $('<code>').text(entry.id));
    add('Published', timeElement(entry.published));
    add('Updated', timeElement(entry.updated));
    var authors = (entry.author || []).map(function (author) {
      return author.uri || author.name || author.email || '';
    });
    if (authors.length) { add('Author', $('<span>').text(authors.join(', '))); }
  }

  function renderForm() {
    var mine = state.open.mine;
    var $form = $('#fields').empty();
    Object.keys(mine).forEach(function (name) {
      if (SERVER_FIELDS.indexOf(name) >= 0 || name === 'link') { return; }
      $form.append(renderField([name], mine[name]));
    });
    if ($form.children().length === 0) {
      $form.append($('<p class="empty">').text('No fields yet.'));
    }
    $form.append(renderAddBar([], mine, state.schema));
  }

  function renderField(path, value) {
    var node = schemaAt(path);
    var kind = kindOf(value, node);
    var last = path[path.length - 1];
    var label = typeof last === 'number' ? '#' + (last + 1) : displayName(last);
    if (kind === 'object' || kind === 'array') {
      var $group = $('<fieldset class="group">').addClass(kind === 'array' ? 'list' : 'object')
        .attr('data-path', JSON.stringify(path));
      var $legend = $('<legend>').append($('<span class="name">').text(label)).appendTo($group);
      if (kind === 'array') {
        var key = mergeKey(node);
        $legend.append($('<span class="hint">').text(key ? 'keyed list · ' + key : 'list'));
      } else if (typeof last === 'number' && mergeKey(schemaAt(path.slice(0, -1)))) {
        var itemKey = mergeKey(schemaAt(path.slice(0, -1)));
        $legend.find('.name')
          .text(itemKey + ' = ' + (value[itemKey] === undefined ? '?' : value[itemKey]));
      }
      $legend.append(removeButton(path));
      if (kind === 'array') {
        var $items = $('<ol class="items">').appendTo($group);
        value.forEach(function (item, i) {
          $items.append($('<li>').append(renderField(path.concat([i]), item)));
        });
        $group.append($('<button type="button" class="small add-item">')
          .attr('data-path', JSON.stringify(path))
          .append('+ Add item', $('<span class="visually-hidden">').text(' to ' + pathLabel(path)))
        );
      } else {
        Object.keys(value).forEach(function (name) {
          $group.append(renderField(path.concat([name]), value[name]));
        });
        $group.append(renderAddBar(path, value, node));
      }
      return $group;
    }
    var id = 'field-' + (++fieldIds);
    var $row = $('<div class="field">').attr('data-path', JSON.stringify(path));
    $('<label>').attr('for', id).text(label).appendTo($row);
    var $control = control(kind, value, node, last)
      .attr({id: id, 'data-path': JSON.stringify(path), 'data-kind': kind});
    $row.append($control);
    var typed = kind === 'integer' || kind === 'number' || kind === 'null';
    $row.append($('<span class="type">').text(typed ? kind : ''));
    $row.append(removeButton(path));
    $row.append($('<p class="field-error" aria-live="polite">').attr('id', id + '-error'));
    $control.attr('aria-describedby', id + '-error');
    return $row;
  }

  function control(kind, value, node, name) {
    if (kind === 'boolean') {
      return $('<input type="checkbox">').prop('checked', value === true);
    }
    if (kind === 'integer' || kind === 'number') {
      return $('<input type="number">').attr('step', kind === 'integer' ? '1' : 'any')
        .val(typeof value === 'number' ? value : '');
    }
    var text = typeof value === 'string' ? value : '';
    var long = text.length > 70 || text.indexOf('\n') >= 0 || name === '______text' ||
      (node && node.format === 'textarea');
    var $input = long ? $('<textarea rows="3">') : $('<input type="text">');
    if (kind === 'null') { $input.attr('placeholder', 'null'); }
    if (node && Array.isArray(node['enum'])) {
      $input.attr('title', 'One of: ' + node['enum'].join(', '));
    }
    return $input.attr('spellcheck', 'false').val(text);
  }

  function removeButton(path) {
    return $('<button type="button" class="remove quiet">')
      .attr({'data-path': JSON.stringify(path), 'aria-label': 'Remove ' + pathLabel(path)})
      .attr('title', 'Remove')
      .text('×');
  }

  /** Buttons that add the declared fields an object lacks, and "Other field…" where allowed. */
  function renderAddBar(path, value, node) {
    var atRoot = path.length === 0;
    var $bar = $('<div class="add-bar">').attr('data-add-for', JSON.stringify(path));
    var declared = node && isObject(node.properties) ? Object.keys(node.properties) : [];
    if (atRoot && declared.indexOf('title') < 0) { declared = ['title'].concat(declared); }
    var hiddenPrefix = 'Add the field ' + (atRoot ? '' : pathLabel(path) + '.');
    declared.forEach(function (name) {
      if (Object.prototype.hasOwnProperty.call(value, name)) { return; }
      $bar.append($('<button type="button" class="small add-field">')
        .attr('data-path', JSON.stringify(path.concat([name])))
        .append('+ ', $('<span class="visually-hidden">').text(hiddenPrefix), displayName(name)));
    });
    if (isOpen(node, atRoot)) {
      $bar.append($('<button type="button" class="small add-other">')
        .attr('aria-expanded', 'false').append('Other field…',
          atRoot ? '' : $('<span class="visually-hidden">').text(' in ' + pathLabel(path))));
      var nameId = 'field-' + (++fieldIds);
      var $other = $('<div class="add-other-form" hidden>');
      $other.append($('<label>').attr('for', nameId).text('Name'),
        $('<input type="text" class="new-name" spellcheck="false" autocomplete="off">')
          .attr('id', nameId),
        $('<label>').attr('for', nameId + '-type').text('Type'),
        $('<select class="new-type">').attr('id', nameId + '-type')
          .append(NEW_FIELD_TYPES.map(function (type) {
            return $('<option>').val(type).text(type === 'array' ? 'list' : type);
          })),
        $('<button type="button" class="small add-named">').text('Add'),
        $('<button type="button" class="small quiet cancel-add">').text('Cancel'));
      $bar.append($other);
    }
    return $bar;
  }

  function fieldPath(element) { return JSON.parse($(element).attr('data-path')); }

  /** Read one control into the edited entry, typed by its kind. */
  function readControl(element) {
    var $control = $(element);
    var path = fieldPath(element);
    var kind = $control.attr('data-kind');
    var label = pathLabel(path);
    var problem = '';
    var value;
    if (kind === 'boolean') {
      value = $control.prop('checked');
    } else if (kind === 'integer' || kind === 'number') {
      value = element.valueAsNumber;
      if ($control.val() === '' || isNaN(value)) {
        problem = label + ' must be a number.';
      } else if (kind === 'integer' && Math.floor(value) !== value) {
        problem = label + ' must be a whole number.';
      }
    } else {
      value = $control.val();
      if (kind === 'null' && value === '') { value = null; }
    }
    if (problem) {
      state.open.invalid[label] = problem;
    } else {
      delete state.open.invalid[label];
      setAt(state.open.mine, path, value);
    }
    $control.attr('aria-invalid', problem ? 'true' : null);
    $('#' + $control.attr('id') + '-error').text(problem);
    markChanges();
  }

  function changeStructure(change, focusPath) {
    change(state.open.mine);
    state.open.invalid = {};
    renderForm();
    markChanges();
    var $target = focusPath ? $('#fields [data-path]').filter(function () {
      return $(this).attr('data-path') === JSON.stringify(focusPath);
    }).first() : $();
    var $focus = $target.is(':input') ? $target : $target.find(':input').not('.remove').first();
    if (!$focus.length) { $focus = $target.find(':input').first(); }
    ($focus.length ? $focus : $('#fields :input').first()).trigger('focus');
  }

  function addNamed(path, type) {
    var node = schemaAt(path);
    var value = newValue(node, type);
    changeStructure(function (mine) { setAt(mine, path, value); }, path);
  }

  function addItem(path) {
    var list = getAt(state.open.mine, path);
    var node = schemaAt(path);
    var itemNode = node && isObject(node.items) ? node.items : null;
    var sample = list.length ? list[list.length - 1] : undefined;
    var item = newValue(itemNode, itemNode ? null : kindOf(sample, null));
    var key = mergeKey(node);
    if (key && isObject(item) && item[key] === undefined) { item[key] = ''; }
    changeStructure(function (mine) { getAt(mine, path).push(item); }, path.concat([list.length]));
  }

  /** Mark the fields whose value differs from the entry as read, and the unsaved state. */
  function markChanges() {
    var open = state.open;
    if (!open) { return; }
    $('#fields .field, #fields .group').each(function () {
      var path = fieldPath(this);
      var changed = !open.isNew && !same(getAt(open.base, path), getAt(open.mine, path));
      $(this).toggleClass('changed', changed);
    });
    $('#dirty').prop('hidden', !isDirty());
  }

  /** Whether the open entry has edits not saved. */
  function isDirty() {
    var open = state.open;
    return Boolean(open) && !open.isNew && !same(editable(open.base), editable(open.mine));
  }

  // -- the JSON view -----------------------------------------------------------------------------

  function fillJson() {
    $('#raw-json').val(JSON.stringify(state.open.mine, null, 2)).attr('aria-invalid', null);
    $('#json-error').text('');
  }

  /** Take the textarea's JSON as the edited entry; false (and a message) when it isn't valid. */
  function readJson() {
    var parsed;
    try {
      parsed = JSON.parse($('#raw-json').val());
    } catch (e) {
      $('#json-error').text(e.message);
      $('#raw-json').attr('aria-invalid', 'true');
      return false;
    }
    if (!isObject(parsed)) {
      $('#json-error').text('The entry must be a JSON object.');
      $('#raw-json').attr('aria-invalid', 'true');
      return false;
    }
    $('#json-error').text('');
    $('#raw-json').attr('aria-invalid', null);
    state.open.mine = parsed;
    state.open.invalid = {};
    markChanges();
    return true;
  }

  function selectTab(tab) {
    if (tab === state.tab) { return; }
    if (state.tab === 'json' && !readJson()) { return; }
    state.tab = tab;
    TABS.forEach(function (name) {
      $('#tab-' + name).attr('aria-selected', String(tab === name))
        .attr('tabindex', tab === name ? null : '-1');
      $('#' + name + '-panel').prop('hidden', tab !== name);
    });
    if (tab === 'json') {
      fillJson();
    } else if (tab === 'form') {
      renderForm();
      markChanges();
    } else {
      showHistory();
    }
  }

  /** history.js shows the open entry's revisions in the History tab. */
  function showHistory() { $(document).trigger('feedstore:history', [state.open]); }

  // -- messages, state in the address, wiring ----------------------------------------------------

  function notice(text) {
    $('#error').prop('hidden', true);
    $('#notice').text(text);
  }

  function showError(text) {
    $('#notice').text('');
    $('#error-text').text(text);
    $('#error').prop('hidden', false);
  }

  function busy(on) {
    state.busy = on;
    $('#editor').attr('aria-busy', on ? 'true' : null);
    $('#save, #keep-mine, #take-theirs, #save-merge, #delete').prop('disabled', on);
  }

  function hashFor(listKey, openKey) {
    return '#list=' + encodeURI(listKey) + (openKey ? '&open=' + encodeURI(openKey) : '');
  }

  function updateHash() {
    var hash = hashFor(state.list.key, state.open && !state.open.isNew ? state.open.key : null);
    if (location.hash !== hash) { history.replaceState(null, '', hash); }
  }

  function readHash() {
    var found = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (pair) {
      var cut = pair.indexOf('=');
      if (cut > 0) {
        try {
          found[pair.slice(0, cut)] = decodeURI(pair.slice(cut + 1));
        } catch (ignored) { /* a mangled address: ignore that part */ }
      }
    });
    return found;
  }

  function loadSchema() {
    return api.schema().then(function (data, text, xhr) {
      state.schema = xhr.status === 204 || !isObject(data) ? null : data;
      var properties = state.schema && state.schema.properties;
      var names = isObject(properties) ? Object.keys(properties) : [];
      $('#schema-status').text(state.schema ? 'Schema: ' + names.length + ' fields' : 'No schema')
        .attr('title', names.join(', '));
    }, function () {
      state.schema = null;
      $('#schema-status').text('Schema: unavailable');
      return $.Deferred().resolve();
    });
  }

  function wire() {
    $('#goto').on('submit', function (event) {
      event.preventDefault();
      var key = $.trim($('#goto-key').val()) || '/';
      browse(key.charAt(0) === '/' ? key : '/' + key);
    });
    $('#children').on('click', 'a.open-entry', function (event) {
      event.preventDefault();
      openEntry($(this).closest('tr').attr('data-key'));
    }).on('click', 'button.browse-children', function () {
      browse($(this).closest('tr').attr('data-key')).then(function () {
        $('#children a.open-entry').first().trigger('focus');
      });
    });
    $('#breadcrumb').on('click', 'a.crumb', function (event) {
      event.preventDefault();
      browse($(this).attr('data-key'));
    });
    $('#prev-page').on('click', function () { turnPage(-1); });
    $('#next-page').on('click', function () { turnPage(1); });
    $('#page-size').on('change', function () { browse(state.list.key); });
    $('#new-child').on('click', function () { openNew(state.list.key); });
    $('#error-close').on('click', function () { $('#error').prop('hidden', true); });

    var $fields = $('#fields');
    $fields.on('submit', function (event) { event.preventDefault(); save(); });
    $fields.on('input change', ':input[data-kind]', function () { readControl(this); });
    $fields.on('click', 'button.remove', function () {
      var path = fieldPath(this);
      var parentPath = path.slice(0, -1);
      changeStructure(function (mine) { setAt(mine, path, undefined); },
        parentPath.length ? parentPath : null);
    });
    $fields.on('click', 'button.add-field', function () { addNamed(fieldPath(this)); });
    $fields.on('click', 'button.add-item', function () { addItem(fieldPath(this)); });
    $fields.on('click', 'button.add-other', function () {
      var $bar = $(this).closest('.add-bar');
      $(this).attr('aria-expanded', 'true');
      $bar.children('.add-other-form').prop('hidden', false).find('.new-name').trigger('focus');
    });
    $fields.on('click', 'button.cancel-add', function () {
      var $bar = $(this).closest('.add-bar');
      $bar.children('.add-other-form').prop('hidden', true);
      $bar.children('.add-other').attr('aria-expanded', 'false').trigger('focus');
    });
    $fields.on('keydown', '.new-name', function (event) {
      if (event.key === 'Enter') {
        event.preventDefault();
        $(this).siblings('.add-named').trigger('click');
      }
      if (event.key === 'Escape') { $(this).siblings('.cancel-add').trigger('click'); }
    });
    $fields.on('click', 'button.add-named', function () {
      var $bar = $(this).closest('.add-bar');
      var name = $.trim($bar.find('.new-name').val());
      var path = JSON.parse($bar.attr('data-add-for')).concat([name]);
      var problem = !name ? 'Give the field a name.' :
        getAt(state.open.mine, path) !== undefined ? pathLabel(path) + ' is there already.' :
        path.length === 1 && SERVER_FIELDS.concat(['link']).indexOf(name) >= 0 ?
          name + ' is kept by the server.' : '';
      if (problem) {
        showError(problem);
        $bar.find('.new-name').trigger('focus');
        return;
      }
      addNamed(path, $bar.find('.new-type').val());
    });

    $('#raw-json').on('input', function () { readJson(); });
    $('#tab-form').on('click', function () { selectTab('form'); });
    $('#tab-json').on('click', function () { selectTab('json'); });
    $('#tab-history').on('click', function () { selectTab('history'); });
    $('.tabs').on('keydown', '[role="tab"]', function (event) {
      if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') { return; }
      var shown = TABS.filter(function (name) { return !$('#tab-' + name).prop('hidden'); });
      var at = shown.indexOf(state.tab) + (event.key === 'ArrowRight' ? 1 : -1);
      selectTab(shown[(at + shown.length) % shown.length]);
      $('#tab-' + state.tab).trigger('focus');
    });

    $('#save').on('click', function () { save(); });
    $('#revert').on('click', function () {
      if (state.open.isNew) { openNew(state.open.parent); return; }
      openLoaded(state.open.base);
      notice('Reverted ' + state.open.key + ' to revision ' + state.open.revision + '.');
    });
    $('#reload').on('click', function () {
      openEntry(state.open.key).then(function () {
        if (state.open) {
          notice('Reloaded ' + state.open.key + ': revision ' + state.open.revision + '.');
        }
      });
    });
    $('#delete').on('click', function () {
      $('#confirm-delete-key').text(state.open.key);
      $('#confirm-delete-rev').text(state.open.revision);
      document.getElementById('confirm-delete').showModal();
    });
    $('#confirm-delete').on('close', function () {
      if (this.returnValue === 'delete') { remove(); } else { $('#delete').trigger('focus'); }
      this.returnValue = '';
    });

    // login.js: after a login, show what the new principal sees.
    $(document).on('feedstore:login', function () { reloadList(); });

    $(document).on('keydown', function (event) {
      if ((event.ctrlKey || event.metaKey) && (event.key === 's' || event.key === 'S')) {
        if (state.open && !$('#entry-view').prop('hidden')) {
          event.preventDefault();
          save();
        }
      }
    });
  }

  /** What conflict.js, history.js and live.js use of this file (conflict.js adds showConflict). */
  var page = window.feedstorePage = {
    state: state, call: call, dataUrl: dataUrl, entriesOf: entriesOf, errorBody: errorBody,
    errorMessage: errorMessage, conflictOf: conflictOf, revisionOf: revisionOf, selfKey: selfKey,
    editable: editable, same: same, isObject: isObject, timeElement: timeElement, notice: notice,
    showError: showError, busy: busy, openEntry: openEntry, reloadList: reloadList,
    isDirty: isDirty, save: save, parentOf: parentOf, listRow: listRow,
    renderListState: renderListState, markOpenRow: markOpenRow, principalName: principalName,
    closeEditor: closeEditor, write: write, openLoaded: openLoaded, renderEditor: renderEditor,
    clone: clone, getAt: getAt, setAt: setAt, pathLabel: pathLabel, displayName: displayName,
    childSchema: childSchema, mergeKey: mergeKey, SERVER_FIELDS: SERVER_FIELDS
  };

  $(function () {
    wire();
    var address = readHash();
    var listKey = address.list || (address.open ? parentOf(address.open) : '/');
    loadSchema().always(function () {
      browse(listKey).always(function () {
        if (address.open) { openEntry(address.open); }
        $('body').attr('data-ready', 'true');
      });
    });
  });
}(jQuery));
