/*
 * The page's login (docs/api.md §15): who is logged in (GET /d/?_whoami) in the header, a login
 * form whenever a request answers 401, and logout. The form sends the password once, as Basic, to
 * /d/?_login; afterwards the HttpOnly session cookie rides every $.ajax. The server answers 401
 * with `WWW-Authenticate: Bearer`, never Basic, so the browser never shows its own password
 * dialog. With auth off (?_whoami is 400) nothing of this shows.
 *
 * app.js listens for the `feedstore:login` event on document to reload what it shows, live.js
 * for `feedstore:logout` to stop following the change feed.
 */
(function ($) {
  'use strict';

  var ACCOUNT_OPTIONS = /[?&]_(login|logout|whoami|uid)(&|=|$)/;

  function titleOf(xhr) {
    var body = xhr.responseJSON;
    if (!body) {
      try { body = JSON.parse(xhr.responseText); } catch (ignored) { body = null; }
    }
    return body && body.feed && body.feed.title;
  }

  /** Basic credentials of UTF-8 text (btoa alone takes Latin-1 only). */
  function basic(account, password) {
    var bytes = new TextEncoder().encode(account + ':' + password);
    return 'Basic ' + btoa(String.fromCharCode.apply(null, Array.from(bytes)));
  }

  function showAccount(entry) {
    var groups = (entry.category || []).map(function (c) { return c.___term; });
    var admin = groups.indexOf('/_group/$admin') >= 0 ? ' (admin)' : '';
    // data-uid and data-account name the writes of this user where the page shows who wrote.
    $('#whoami').attr({'data-uid': entry.title, 'data-account': entry.subtitle})
      .text(entry.subtitle + admin).attr('title', 'uid ' + entry.title +
      (groups.length ? ', ' + groups.join(', ') : ''));
    $('#account').prop('hidden', false);
  }

  function showLogin(message) {
    var dialog = document.getElementById('login');
    $('#account').prop('hidden', true);
    $('#login-error').text(message || '');
    if (!dialog.open) {
      dialog.showModal();
      $('#login-account').trigger('focus');
    }
  }

  function whoami() {
    return $.ajax({url: '/d/?_whoami', type: 'GET', dataType: 'json'}).then(function (data) {
      showAccount(data.feed.entry[0]);
    }, function (xhr) {
      if (xhr.status === 401) { showLogin(''); }
    });
  }

  function login(event) {
    event.preventDefault();
    var account = $('#login-account').val();
    var password = $('#login-password').val();
    $('#login-submit').prop('disabled', true);
    $.ajax({
      url: '/d/?_login',
      type: 'POST',
      dataType: 'json',
      headers: {Authorization: basic(account, password)}
    }).then(function () {
      $('#login-password').val('');
      document.getElementById('login').close();
      whoami();
      $(document).trigger('feedstore:login');
    }, function (xhr) {
      $('#login-error').text(xhr.status === 401 ? 'Wrong account or password.' :
        titleOf(xhr) || 'The server answered ' + xhr.status + '.');
      $('#login-password').val('').trigger('focus');
    }).always(function () { $('#login-submit').prop('disabled', false); });
  }

  function logout() {
    $.ajax({url: '/d/?_logout', type: 'POST', dataType: 'json'}).then(function () {
      showLogin('Logged out.');
      $(document).trigger('feedstore:logout');
    });
  }

  $(function () {
    $('#login-form').on('submit', login);
    $('#logout').on('click', logout);
    // Not dismissable with Escape: behind it every request would answer 401 again.
    $('#login').on('cancel', function (event) { event.preventDefault(); });
    $(document).ajaxError(function (event, xhr, settings) {
      if (xhr.status === 401 && !ACCOUNT_OPTIONS.test(settings.url)) {
        showLogin(titleOf(xhr) === 'Authentication error.' ? 'Please log in.' : titleOf(xhr));
      }
    });
    whoami();
  });
}(jQuery));
