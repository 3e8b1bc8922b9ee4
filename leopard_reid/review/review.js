/* leopard-reid census review page.
 * Rows are drawn a page at a time from the embedded JSON (every detection is reviewable, however many).
 * Decisions live in localStorage under the census run id as the reviewer works, are exported as
 * decisions.csv (the columns apply-review reads) and can be loaded back from that file.
 * No network access and no innerHTML: every text from the data goes in through textContent/attributes. */
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';  // the SVG namespace name (an identifier, never fetched)
  var DATA = JSON.parse(document.getElementById('review-data').textContent);
  var IMAGES = JSON.parse(document.getElementById('review-images').textContent);
  var ROWS = DATA.rows;
  var STORE = 'leopard-reid-review:' + DATA.run;
  var PAGE = DATA.page_size;
  var byKey = {};
  var state = {};     // row key -> {decision, identity}: what the reviewer set (absent: the census default)
  var visible = [];   // indexes of the rows passing the filters, in review order
  var page = 0;
  var current = 0;    // position in visible of the highlighted row
  var saved = true;
  var $ = function (id) { return document.getElementById(id); };

  ROWS.forEach(function (r, i) { byKey[keyOf(r.path, r.bbox)] = i; });

  function keyOf(path, bbox) { return String(path) + '|' + String(bbox).replace(/\s+/g, ''); }
  function rowKey(r) { return keyOf(r.path, r.bbox); }
  function decisionOf(r) { var s = state[rowKey(r)]; return s ? s.decision : r['default']; }
  function identityOf(r) { var s = state[rowKey(r)]; return s ? s.identity : r.proposed; }
  function isNewName(id) { return /^NEW-\d+$/.test(id || ''); }

  function message(text, error) {
    var m = $('message');
    m.textContent = text;
    m.className = error ? 'small error' : 'small';
  }

  // ------------------------------------------------------------------ persistence
  function save() {
    try {
      localStorage.setItem(STORE, JSON.stringify({version: 1, saved: new Date().toISOString(), decisions: state}));
      saved = true;
    } catch (e) {
      saved = false;
      message('Decisions cannot be kept in this browser (' + e.name + '): download decisions.csv before leaving.', true);
    }
  }

  function restore() {
    var text = null;
    try { text = localStorage.getItem(STORE); } catch (e) { saved = false; return 0; }
    if (!text) return 0;
    var n = 0;
    try {
      var got = JSON.parse(text).decisions || {};
      Object.keys(got).forEach(function (k) {
        var s = got[k];
        if (byKey.hasOwnProperty(k) && s && DATA.decisions.concat(['']).indexOf(s.decision) >= 0) {
          state[k] = {decision: s.decision, identity: String(s.identity || '')};
          n++;
        }
      });
    } catch (e) {
      message('The decisions saved in this browser could not be read and were ignored (' + e.message + ').', true);
    }
    return n;
  }

  // ------------------------------------------------------------------ decisions
  function setDecision(i, decision, identity) {
    var r = ROWS[i];
    if (decision === null || (decision === r['default'] && identity === r.proposed)) delete state[rowKey(r)];
    else state[rowKey(r)] = {decision: decision, identity: identity};
    save();
    updateRow(i);
    progress();
  }
  function accept(i) { setDecision(i, 'confirm', ROWS[i].proposed); }
  function pick(i, id) { setDecision(i, id === ROWS[i].proposed ? 'confirm' : 'change', id); }
  function unusable(i) { setDecision(i, 'reject', ''); }
  function clear(i) { setDecision(i, null); }
  function typed(i, value) { value = value.trim(); if (value) pick(i, value); else clear(i); }

  function freshNew() {
    var top = DATA.next_new - 1;
    Object.keys(state).forEach(function (k) {
      var m = /^NEW-(\d+)$/.exec(state[k].identity || '');
      if (m) top = Math.max(top, parseInt(m[1], 10));
    });
    return 'NEW-' + String(top + 1).padStart(4, '0');
  }
  function markNew(i) {
    var r = ROWS[i], s = state[rowKey(r)];
    if (isNewName(r.proposed)) pick(i, r.proposed);
    else if (s && s.decision === 'change' && isNewName(s.identity)) return;  // already a new individual
    else pick(i, freshNew());
  }

  // ------------------------------------------------------------------ drawing
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'class') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function picture(idx, alt) {
    var im = idx == null ? null : IMAGES[idx];
    if (!im) return el('span', {'class': 'noimg', text: 'no picture'});
    return el('img', {src: im[0], alt: alt, width: im[1], height: im[2]});
  }

  function matchPicture(qIdx, cIdx, m, H) {
    var q = IMAGES[qIdx], c = cIdx == null ? null : IMAGES[cIdx], gap = 6;
    var qw = Math.round(q[1] * H / q[2]), cw = c ? Math.round(c[1] * H / c[2]) : H, W = qw + gap + cw;
    var svg = svgEl('svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'class': 'match', role: 'img'});
    svg.appendChild(svgEl('image', {href: q[0], x: 0, y: 0, width: qw, height: H}));
    if (c) svg.appendChild(svgEl('image', {href: c[0], x: qw + gap, y: 0, width: cw, height: H}));
    else svg.appendChild(svgEl('rect', {x: qw + gap, y: 0, width: cw, height: H, fill: '#ccc'}));
    for (var k = 0; 2 * k + 1 < m.q.length && 2 * k + 1 < m.c.length; k++) {
      var colour = 'hsl(' + ((k * 47) % 360) + ',85%,55%)';
      var x1 = m.q[2 * k] / 1000 * qw, y1 = m.q[2 * k + 1] / 1000 * H;
      var x2 = qw + gap + m.c[2 * k] / 1000 * cw, y2 = m.c[2 * k + 1] / 1000 * H;
      svg.appendChild(svgEl('line', {x1: x1, y1: y1, x2: x2, y2: y2, stroke: colour}));
      svg.appendChild(svgEl('circle', {cx: x1, cy: y1, r: 2.5, fill: 'none', stroke: colour}));
      svg.appendChild(svgEl('circle', {cx: x2, cy: y2, r: 2.5, fill: 'none', stroke: colour}));
    }
    return svg;
  }

  function candCard(i, r, id, label, img, m, key) {
    var body = [];
    if (m && r.img != null) body.push(matchPicture(r.img, img, m, 110));
    else if (img != null) body.push(picture(img, 'exemplar of ' + id));
    body.push(el('div', {}, [el('b', {text: id}), document.createTextNode(' ' + label)]));
    if (m) body.push(el('div', {'class': 'small', text: m.n + ' verified keypoint correspondences (score ' + m.s + ')'}));
    var b = el('button', {type: 'button', 'class': 'cand', 'data-id': id,
      title: 'pick ' + id + (key ? ' (key ' + key + ')' : '')}, body);
    b.addEventListener('click', function (ev) { ev.stopPropagation(); select(i); pick(i, id); });
    return b;
  }

  function renderRow(i) {
    var r = ROWS[i];
    var info = el('div', {'class': 'info'}, [
      el('div', {'class': 'path', text: r.path}),
      el('div', {'class': 'small', text: 'bbox ' + r.bbox}),
      el('div', {'class': 'small', text: 'camera ' + r.camera + ' \u00b7 ' + r.datetime + ' \u00b7 ' + r.side + ' flank'}),
      el('div', {'class': 'small', text: 'burst ' + r.burst + ' \u00b7 occasion ' + r.occasion}),
      el('div', {}, [el('span', {'class': 'badge b-' + r.decision, text: r.decision}), document.createTextNode(' '),
        el('b', {text: r.proposed}), document.createTextNode(r.score == null ? '' : ' P=' + r.score.toFixed(2))]),
      r.flank ? el('div', {'class': 'small', text: 'opposite flank seen at the same station at the same time: ' +
        r.flank + '. One animal gets one identity for both flanks; give them different ones if they are two animals.'}) : null
    ]);
    var cands = el('div', {'class': 'cands'}, r.cands.map(function (c, k) {
      return candCard(i, r, c.id, 'P=' + c.p.toFixed(2), c.img, c.m, k < 9 ? String(k + 1) : '');
    }));
    if (r.first) cands.appendChild(candCard(i, r, r.first.id, 'first sighting ' + r.first.path, r.first.img, r.first.m, ''));
    var input = el('input', {type: 'text', 'class': 'identity', title: 'identity (type to change)', placeholder: 'identity'});
    input.addEventListener('change', function () { typed(i, input.value); });
    var controls = el('div', {'class': 'controls'}, [
      el('div', {'class': 'state'}),
      button('accept', 'accept the proposed identity (a)', function () { accept(i); }),
      button('new', 'a new individual (n)', function () { markNew(i); }),
      button('unusable', 'not a leopard / unusable (u)', function () { unusable(i); }),
      button('clear', 'back to the census default (c)', function () { clear(i); }),
      input
    ]);
    var row = el('section', {'class': 'det ' + r.decision, id: 'row-' + i, 'data-row': i, 'data-path': r.path,
      'data-bbox': r.bbox}, [info, el('div', {'class': 'query'}, [picture(r.img, 'detection crop')]), cands, controls]);
    row.addEventListener('click', function () { select(i); });
    updateRow(i, row);
    return row;
  }
  function button(text, title, fn) {
    var b = el('button', {type: 'button', title: title, 'class': 'act-' + text, text: text});
    b.addEventListener('click', fn);
    return b;
  }

  function updateRow(i, row) {
    row = row || $('row-' + i);
    if (!row) return;
    var r = ROWS[i], d = decisionOf(r), id = identityOf(r), own = state.hasOwnProperty(rowKey(r));
    var text = {confirm: '\u2713 ' + id, change: '\u2192 ' + id, reject: '\u2717 not a leopard / unusable',
      skip: 'skipped', '': 'not decided'}[d];
    var st = row.querySelector('.state');
    st.textContent = (text === undefined ? d + ' ' + id : text) + (own || !d ? '' : ' (census default)');
    st.className = 'state s-' + (d || 'none');
    row.querySelector('input.identity').value = d === 'reject' ? '' : id;
    row.querySelectorAll('.cand').forEach(function (b) {
      b.classList.toggle('chosen', (d === 'confirm' || d === 'change') && b.getAttribute('data-id') === id);
    });
    row.setAttribute('data-decision', d);
    row.setAttribute('data-identity', id);
  }

  function progress() {
    var done = ROWS.filter(function (r) { return decisionOf(r); }).length;
    $('progress').textContent = done + ' of ' + ROWS.length + ' decided, ' + Object.keys(state).length +
      ' changed by you' + (saved ? ' \u00b7 kept in this browser' : ' \u00b7 NOT kept: download decisions.csv');
  }

  // ------------------------------------------------------------------ filters, pages, navigation
  function passes(r) {
    var fd = $('f-decision').value, fc = $('f-camera').value, fi = $('f-identity').value.trim().toLowerCase();
    if (fd === 'todo' && decisionOf(r)) return false;
    if (fd === 'reviewed' && !state.hasOwnProperty(rowKey(r))) return false;
    if (fd === 'reject' && decisionOf(r) !== 'reject') return false;
    if (['uncertain', 'new', 'known'].indexOf(fd) >= 0 && r.decision !== fd) return false;
    if (fc && r.camera !== fc) return false;
    return !fi || r.proposed.toLowerCase().indexOf(fi) >= 0 || String(identityOf(r)).toLowerCase().indexOf(fi) >= 0;
  }
  function filter() {
    visible = [];
    ROWS.forEach(function (r, i) { if (passes(r)) visible.push(i); });
    page = 0;
    current = 0;
    draw();
  }
  function pages() { return Math.max(1, Math.ceil(visible.length / PAGE)); }
  function draw() {
    var main = $('rows'), start = page * PAGE, end = Math.min(visible.length, start + PAGE);
    main.textContent = '';
    var frag = document.createDocumentFragment();
    for (var p = start; p < end; p++) frag.appendChild(renderRow(visible[p]));
    if (!visible.length) frag.appendChild(el('div', {'class': 'empty', text: 'No detection matches these filters.'}));
    main.appendChild(frag);
    $('page-info').textContent = visible.length ? 'rows ' + (start + 1) + '\u2013' + end + ' of ' + visible.length +
      ' (page ' + (page + 1) + '/' + pages() + ')' : '0 rows';
    $('prev-page').disabled = page === 0;
    $('next-page').disabled = page >= pages() - 1;
    highlight(false);
    progress();
  }
  function goPage(p) {
    p = Math.max(0, Math.min(pages() - 1, p));
    if (p === page) return;
    page = p;
    current = p * PAGE;
    draw();
    window.scrollTo(0, 0);
  }
  function highlight(scroll) {
    document.querySelectorAll('.det.current').forEach(function (e) { e.classList.remove('current'); });
    var row = visible.length ? $('row-' + visible[current]) : null;
    if (!row) return;
    row.classList.add('current');
    if (scroll) row.scrollIntoView({block: 'nearest'});
  }
  function select(i) {
    var pos = visible.indexOf(i);
    if (pos >= 0) { current = pos; highlight(false); }
  }
  function move(step) {
    if (!visible.length) return;
    var pos = Math.max(0, Math.min(visible.length - 1, current + step));
    var p = Math.floor(pos / PAGE);
    current = pos;
    if (p !== page) { page = p; draw(); }
    highlight(true);
  }

  document.addEventListener('keydown', function (ev) {
    var t = ev.target.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || t === 'INPUT' || t === 'SELECT' || t === 'TEXTAREA') return;
    if (t === 'BUTTON' && ev.key === 'Enter') return;  // a focused button's own click
    if (!visible.length) return;
    var i = visible[current], r = ROWS[i], k = ev.key;
    var acts = {a: accept, Enter: accept, n: markNew, u: unusable, x: unusable};
    if (acts[k]) { acts[k](i); move(1); }
    else if (/^[1-9]$/.test(k) && r.cands[+k - 1]) { pick(i, r.cands[+k - 1].id); move(1); }
    else if (k === 'c') clear(i);
    else if (k === 'j' || k === 'ArrowDown') move(1);
    else if (k === 'k' || k === 'ArrowUp') move(-1);
    else if (k === 'ArrowRight') goPage(page + 1);
    else if (k === 'ArrowLeft') goPage(page - 1);
    else return;
    ev.preventDefault();
  });

  // ------------------------------------------------------------------ decisions.csv out and in
  function cell(v) {
    v = v == null ? '' : String(v);
    return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function csvText() {
    var out = [DATA.columns.map(cell).join(',')];
    ROWS.forEach(function (r) {
      var v = {path: r.path, bbox: r.bbox, proposed: r.proposed, decision: decisionOf(r), identity: identityOf(r),
        side: r.side, camera: r.camera, datetime: r.datetime};
      out.push(DATA.columns.map(function (c) { return cell(v[c]); }).join(','));
    });
    return out.join('\n') + '\n';
  }
  function download() {
    var url = URL.createObjectURL(new Blob([csvText()], {type: 'text/csv'}));
    var a = el('a', {href: url, download: 'decisions.csv'});
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  function parseCSV(text) {
    var rows = [], row = [], field = '', quoted = false;
    text = text.replace(/^\uFEFF/, '');
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (quoted) {
        if (ch !== '"') field += ch;
        else if (text[i + 1] === '"') { field += '"'; i++; }
        else quoted = false;
      } else if (ch === '"') quoted = true;
      else if (ch === ',') { row.push(field); field = ''; }
      else if (ch === '\n' || ch === '\r') {
        if (ch === '\r' && text[i + 1] === '\n') i++;
        row.push(field); rows.push(row); row = []; field = '';
      } else field += ch;
    }
    if (quoted) throw new Error('a quoted field is not closed');
    if (field !== '' || row.length) { row.push(field); rows.push(row); }
    return rows.filter(function (r) { return r.length > 1 || r[0] !== ''; });
  }

  /* Load decisions.csv text: all its rows or none (a line with an unknown decision refuses the file). */
  function loadCSV(text) {
    var rows = parseCSV(text);
    if (!rows.length) throw new Error('the file is empty');
    var head = rows[0].map(function (h) { return h.trim().toLowerCase(); }), col = {};
    var missing = ['path', 'bbox', 'decision', 'identity'].filter(function (c) { return (col[c] = head.indexOf(c)) < 0; });
    if (missing.length) throw new Error('not a decisions.csv: no column ' + missing.join(', '));
    var got = {}, problems = [], other = 0, allowed = DATA.decisions.concat(['']);
    for (var k = 1; k < rows.length; k++) {
      var r = rows[k], key = keyOf(r[col.path] || '', r[col.bbox] || '');
      if (!byKey.hasOwnProperty(key)) { other++; continue; }
      var d = (r[col.decision] || '').trim().toLowerCase(), id = (r[col.identity] || '').trim();
      if (d === 'nan') d = '';
      if (allowed.indexOf(d) < 0) { problems.push('line ' + (k + 1) + ': decision "' + d + '"'); continue; }
      got[key] = {decision: d, identity: d === 'confirm' && !id ? ROWS[byKey[key]].proposed : id};
    }
    if (problems.length) {
      throw new Error(problems.slice(0, 5).join('; ') + (problems.length > 5 ? ' (and ' + (problems.length - 5) +
        ' more)' : '') + ' (use ' + DATA.decisions.join(', ') + ' or leave it blank); nothing loaded');
    }
    Object.keys(got).forEach(function (key) {
      var r = ROWS[byKey[key]], s = got[key];
      if (s.decision === r['default'] && s.identity === r.proposed) delete state[key];
      else state[key] = s;
    });
    save();
    filter();
    return {loaded: Object.keys(got).length, other: other};
  }

  function loadFile(file) {
    var reader = new FileReader();
    reader.onload = function () {
      try {
        var res = loadCSV(String(reader.result));
        message('Loaded ' + res.loaded + ' decision(s) from ' + file.name +
          (res.other ? '; ' + res.other + ' row(s) of another census ignored' : '') + '.');
      } catch (e) {
        message(file.name + ': ' + e.message, true);
      }
      $('load-csv').value = '';
    };
    reader.onerror = function () { message(file.name + ': could not be read', true); };
    reader.readAsText(file);
  }

  // ------------------------------------------------------------------ start
  ['f-decision', 'f-camera'].forEach(function (id) { $(id).addEventListener('change', filter); });
  $('f-identity').addEventListener('input', filter);
  $('prev-page').addEventListener('click', function () { goPage(page - 1); });
  $('next-page').addEventListener('click', function () { goPage(page + 1); });
  $('download').addEventListener('click', download);
  $('load-csv').addEventListener('change', function () { if (this.files.length) loadFile(this.files[0]); });
  var restored = restore();
  if (restored) message('Restored ' + restored + ' decision(s) kept in this browser for this census.');
  filter();
  /* For scripts and tests: the CSV the download button saves, loading one, and the reviewer's decisions. */
  window.leopardReview = {
    csv: csvText, load: loadCSV, rows: ROWS.length, store: STORE,
    decisions: function () { return JSON.parse(JSON.stringify(state)); }
  };
}());
