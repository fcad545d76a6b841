/*
 * The conflict view: a save the server refused (409 revision_conflict or merge_conflict, 412
 * precondition_failed, 409 merge_base_gone) shown field by field: the revision edited (base),
 * yours and theirs (error.current), who changed what, and the fields a merge_conflict names
 * (error.conflicts, docs/api.md §17.5) marked "conflict". Keep mine, take theirs, or save a
 * merge of the sides chosen per field, on the current revision.
 *
 * app.js calls window.feedstorePage.showConflict, which this file adds.
 */
(function ($) {
  'use strict';

  var page = window.feedstorePage;

  /** Leaf paths of an entry: nested objects opened up, keyed-list items one by one. */
  function leafPaths(value, node, prefix, out) {
    Object.keys(value).forEach(function (name) {
      if (prefix.length === 0 && page.SERVER_FIELDS.indexOf(name) >= 0) { return; }
      var member = value[name];
      var child = page.childSchema(node, name);
      var path = prefix.concat([name]);
      var key = page.mergeKey(child);
      if (page.isObject(member) && Object.keys(member).length) {
        leafPaths(member, child, path, out);
      } else if (Array.isArray(member) && key && member.length && member.every(function (item) {
        return page.isObject(item) && item[key] !== undefined;
      })) {
        member.forEach(function (item) { out.push(path.concat([{key: key, value: item[key]}])); });
      } else {
        out.push(path);
      }
    });
    return out;
  }

  function showConflict(target, conflict, method, status) {
    var theirs = conflict.current;
    var seen = {};
    var paths = leafPaths(target.mine, page.state.schema, [], [])
      .concat(leafPaths(theirs, page.state.schema, [], []))
      .filter(function (path) {
        var id = JSON.stringify(path);
        if (seen[id]) { return false; }
        seen[id] = true;
        return true;
      });
    var rows = paths.map(function (path) {
      var mine = page.getAt(target.mine, path);
      var theirsValue = page.getAt(theirs, path);
      var base = page.getAt(target.base, path);
      var youChanged = !page.same(mine, base);
      var theyChanged = !page.same(theirsValue, base);
      return {
        path: path, label: page.pathLabel(path), base: base, mine: mine, theirs: theirsValue,
        differs: !page.same(mine, theirsValue), youChanged: youChanged, theyChanged: theyChanged,
        keep: youChanged ? 'mine' : 'theirs', conflicts: []
      };
    });
    rows = markServerConflicts(rows, conflict.conflicts);
    page.state.conflict = {target: target, theirs: theirs, method: method, rows: rows};
    var differing = rows.filter(function (row) { return row.differs; }).length;
    var fields = conflict.conflicts.map(function (item) { return item.field; });
    $('#conflict-key').text(target.key);
    $('#conflict-summary').empty().append(
      $('<strong>').text(conflict.message + ' (' + status + ')'),
      document.createTextNode('Your ' + method + ' of revision ' + target.revision +
        ' was refused: someone saved revision ' + page.revisionOf(theirs) +
        (theirs.updated ? ' at ' + page.timeElement(theirs.updated).text() : '') + ' meanwhile. ' +
        differing + (differing === 1 ? ' field differs.' : ' fields differ.')));
    if (conflict.code === 'merge_conflict') {
      var $note = $('<span class="merge-note">').text('The server merged nothing: you and ' +
        'revision ' + page.revisionOf(theirs) + ' both changed ');
      fields.forEach(function (field, i) {
        $note.append(i ? ', ' : '', $('<code>').text(field));
      });
      $('#conflict-summary').append(' ', $note.append('. Choose a side for each conflict; the ' +
        'other changes are kept from whoever made them.'));
    } else if (conflict.code === 'merge_base_gone') {
      $('#conflict-summary').append(' ', $('<span class="merge-note">').text(
        'The server could not merge: it no longer keeps revision ' + target.revision +
        ' (history is kept per prefix), so compare the fields here.'));
    }
    $('#conflict-base-rev').text('(revision ' + target.revision + ')');
    $('#conflict-mine-rev').text('(edited from revision ' + target.revision + ')');
    $('#conflict-theirs-rev').text('(revision ' + page.revisionOf(theirs) + ')');
    renderConflictRows();
    $('#entry-view, #placeholder').prop('hidden', true);
    $('#conflict').prop('hidden', false);
    $('#conflict-title').trigger('focus');
  }

  /**
   * Attach the server's merge conflicts (error.conflicts) to the rows: a field is named as the
   * rows are (`parts[partsid=a1].quantity`), so it marks the row of that name, or the row that
   * holds it or lies inside it. The values shown are the server's where it names the row exactly.
   * A field no row matches gets a row of its own, shown but kept as theirs.
   */
  function markServerConflicts(rows, conflicts) {
    var within = function (inner, outer) {
      return inner === outer || inner.indexOf(outer + '.') === 0 ||
        inner.indexOf(outer + '[') === 0;
    };
    conflicts.forEach(function (item) {
      var field = String(item.field);
      var matched = rows.filter(function (row) {
        return within(field, row.label) || within(row.label, field);
      });
      matched.forEach(function (row) {
        row.conflicts.push(field);
        if (row.label === field) {
          row.base = nullToUnset(item.base);
          row.theirs = nullToUnset(item.current);
          row.mine = nullToUnset(item.yours);
        }
        row.differs = true;
        row.keep = 'mine';
      });
      if (!matched.length) {
        rows.push({
          path: null, label: field, base: nullToUnset(item.base),
          theirs: nullToUnset(item.current), mine: nullToUnset(item.yours), differs: true,
          youChanged: true, theyChanged: true, keep: 'theirs', conflicts: [field]
        });
      }
    });
    // The server's conflicts first, in its order; then the rest as before.
    return rows.filter(function (row) { return row.conflicts.length; })
      .concat(rows.filter(function (row) { return !row.conflicts.length; }));
  }

  /** error.conflicts says null for a value that isn't there. */
  function nullToUnset(value) { return value === null ? undefined : value; }

  function renderConflictRows() {
    var $body = $('#conflict-table tbody').empty();
    var showSame = $('#show-same').prop('checked');
    page.state.conflict.rows.forEach(function (row, i) {
      var label = row.label;
      var $row = $('<tr class="conflict-row">').attr('data-path', label)
        .toggleClass('differs', row.differs).toggleClass('same', !row.differs)
        .toggleClass('merge-conflict', row.conflicts.length > 0)
        .prop('hidden', !row.differs && !showSame);
      var $name = $('<th scope="row">').append($('<code>').text(label));
      if (row.conflicts.length) {
        $name.append(' ', $('<span class="tag conflict-tag">').text('conflict'), ' ',
          $('<span class="who">').text(row.conflicts.length === 1 && row.conflicts[0] === label ?
            'both changed' : 'both changed ' + row.conflicts.join(', ')));
      } else if (row.differs) {
        var who = row.youChanged && row.theyChanged ? 'both changed' :
          row.youChanged ? 'you changed' : 'they changed';
        $name.append(' ', $('<span class="tag">').text('differs'), ' ',
          $('<span class="who">').text(who));
      }
      $row.append($name, valueCell(row.base, 'base'), valueCell(row.mine, 'mine'),
        valueCell(row.theirs, 'theirs'));
      var $keep = $('<td class="keep">');
      if (!row.path) {
        $keep.append($('<span class="hint">').text('theirs (resolve in the editor)'));
      } else if (row.differs) {
        var $group = $('<div role="radiogroup">').attr('aria-label', 'Keep for ' + label);
        ['mine', 'theirs'].forEach(function (side) {
          var $radio = $('<input type="radio">')
            .attr({name: 'keep-' + i, value: side, 'data-row': i})
            .prop('checked', row.keep === side);
          $group.append($('<label>').append($radio, ' ', side === 'mine' ? 'Yours' : 'Theirs'));
        });
        $keep.append($group);
      } else {
        $keep.append($('<span class="hint">').text('same'));
      }
      $body.append($row.append($keep));
    });
  }

  function valueCell(value, side) {
    var $cell = $('<td class="value">').addClass(side);
    if (value === undefined) { return $cell.append($('<em class="unset">').text('not set')); }
    if (page.isObject(value)) {
      return $cell.append(Object.keys(value).map(function (name) {
        return $('<span class="member">')
          .text(page.displayName(name) + ': ' + JSON.stringify(value[name]));
      }));
    }
    var text = typeof value === 'string' ? value : JSON.stringify(value);
    return $cell.append($('<span>').text(text));
  }

  function resolve(how) {
    var conflict = page.state.conflict;
    var target = conflict.target;
    var theirs = conflict.theirs;
    if (how === 'theirs') {
      page.openLoaded(theirs);
      page.notice('Took theirs: ' + target.key + ' is at revision ' + page.revisionOf(theirs) +
        ' and your edit was dropped.');
      $('#editor-title').trigger('focus');
      return;
    }
    var version = page.clone(target.mine);
    if (how === 'merge') {
      version = page.clone(theirs);
      conflict.rows.forEach(function (row) {
        if (row.path && row.differs && row.keep === 'mine') {
          page.setAt(version, row.path, page.clone(page.getAt(target.mine, row.path)));
        }
      });
    }
    page.write({
      key: target.key, revision: page.revisionOf(theirs), base: theirs, mine: version,
      method: conflict.method, merge: target.merge
    });
  }

  page.showConflict = showConflict;

  $(function () {
    $('#keep-mine').on('click', function () { resolve('mine'); });
    $('#take-theirs').on('click', function () { resolve('theirs'); });
    $('#save-merge').on('click', function () { resolve('merge'); });
    $('#back-to-edit').on('click', function () {
      page.state.conflict = null;
      page.renderEditor();
      $('#editor-title').trigger('focus');
    });
    $('#show-same').on('change', renderConflictRows);
    $('#conflict-table').on('change', 'input[type="radio"]', function () {
      page.state.conflict.rows[parseInt($(this).attr('data-row'), 10)].keep = $(this).val();
    });
  });
}(jQuery));
