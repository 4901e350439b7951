// PXS Node dashboard: plain JavaScript, Chart.js from Debian's libjs-chart.js, no CDN.
// Routes live in the hash (#/patients/ID), so deep links and the back button work.
// The token is asked once (or taken from ?token= on a kiosk link), kept in
// sessionStorage and removed from the address bar.
'use strict';

const view = document.getElementById('view');
const banner = document.getElementById('banner');

(function takeTokenFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const t = params.get('token');
  if (t) {
    sessionStorage.setItem('pxs-token', t);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', window.location.pathname + (rest ? '?' + rest : '') + window.location.hash);
  }
})();

function token() { return sessionStorage.getItem('pxs-token'); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return e;
}

function table(headers, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, ...headers.map(h => el('th', {}, h)))),
            el('tbody', {}, ...rows.map(r => el('tr', {}, ...r.map(c => el('td', {}, c))))));
}

function askToken(message) {
  view.replaceChildren(el('h2', {}, 'Access token'), message ? el('p', { class: 'error' }, message) : '',
    (() => {
      const f = el('form', { id: 'token-form' }, el('input', { type: 'password', id: 'token', size: '48', autocomplete: 'off' }),
                   ' ', el('button', { type: 'submit' }, 'Use'));
      f.addEventListener('submit', ev => {
        ev.preventDefault();
        sessionStorage.setItem('pxs-token', document.getElementById('token').value);
        route();
      });
      return f;
    })());
}

async function api(path, options) {
  const res = await fetch('/api/v1' + path, Object.assign({ headers: { Authorization: 'Bearer ' + token() } }, options || {}));
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (res.status === 401) { sessionStorage.removeItem('pxs-token'); throw { auth: true, message: body.error }; }
  if (!res.ok) throw { message: body.error || res.statusText };
  return body;
}

function date(da, tm) {
  if (!/^\d{8}$/.test(da || '')) return da || '';
  let s = da.slice(0, 4) + '-' + da.slice(4, 6) + '-' + da.slice(6, 8);
  if (/^\d{4}/.test(tm || '')) s += ' ' + tm.slice(0, 2) + ':' + tm.slice(2, 4);
  return s;
}

async function showModelsBanner() {
  try {
    const models = await api('/models');
    // The models the node scores with now; older ones are listed on the models page.
    const nfc = models.filter(m => m.loaded && m.not_for_clinical_use).map(m => m.model);
    banner.hidden = nfc.length === 0;
    banner.textContent = nfc.length ? 'NOT FOR CLINICAL USE: ' + nfc.join(', ') : '';
  } catch (e) { /* the route shows the error */ }
}

async function patientsPage() {
  const input = el('input', { id: 'search', placeholder: 'Patient ID or name prefix', size: '32' });
  const results = el('div', { id: 'results' });
  const form = el('form', { id: 'search-form' }, input, ' ', el('button', { type: 'submit' }, 'Search'));
  const run = async () => {
    const rows = await api('/patients?limit=50&prefix=' + encodeURIComponent(input.value));
    results.replaceChildren(table(['Patient ID', 'Issuer', 'Name', 'Studies', 'Scored', 'Last received'],
      rows.map(p => [p.patient_id == null ? '(no id)' : el('a', { href: '#/patients/' + encodeURIComponent(p.patient_id) +
                       (p.issuer ? '?issuer=' + encodeURIComponent(p.issuer) : '') }, p.patient_id),
                     p.issuer, p.name, p.studies, p.scored, p.last_received_at || ''])));
  };
  form.addEventListener('submit', ev => { ev.preventDefault(); run().catch(fail); });
  view.replaceChildren(el('h2', {}, 'Patients'), form, results);
  await run();
}

async function patientPage(id, query) {
  const issuer = new URLSearchParams(query).get('issuer');
  const h = await api('/patients/' + encodeURIComponent(id) + '/history' + (issuer != null ? '?issuer=' + encodeURIComponent(issuer) : ''));
  // Severity bands come from each model's stored metadata ("trend": {"bands": [...]}).
  const models = await api('/models').catch(() => []);
  const bandsOf = course => {
    const m = models.find(x => x.name === course.model_name && x.version === course.model_version);
    const trend = m && m.metadata && m.metadata.trend;
    return (trend && Array.isArray(trend.bands) ? trend.bands : []).filter(b => typeof b.upper === 'number');
  };
  view.replaceChildren(el('h2', {}, 'Patient ' + h.patient_id + (h.issuer ? ' (' + h.issuer + ')' : '')));
  for (const course of h.courses) {
    const canvas = el('canvas', { class: 'course-chart', 'data-model': course.model, 'data-points': String(course.studies.length),
                                  'data-bands': String(bandsOf(course).length) });
    view.append(el('h3', {}, 'Model ' + course.model), el('div', { class: 'chart' }, canvas));
    const labels = course.studies.map(s => date(s.study_date, s.study_time));
    const calibrated = course.studies.some(s => s.calibrated != null);
    const datasets = [{ label: 'PXS', data: course.studies.map(s => s.pxs), yAxisID: 'y', borderColor: '#1f3b57',
                        pointStyle: course.studies.map(s => s.trend === 'worse' ? 'triangle' : s.trend === 'better' ? 'rectRot' : 'circle'),
                        pointRadius: 6 }];
    for (const band of bandsOf(course)) {
      datasets.push({ label: 'upper bound: ' + band.label, data: course.studies.map(() => band.upper), yAxisID: 'y',
                      borderColor: '#9aa5b1', borderWidth: 1, borderDash: [2, 4], pointRadius: 0, fill: false });
    }
    if (calibrated) datasets.push({ label: course.calibrated_scale || 'calibrated', data: course.studies.map(s => s.calibrated),
                                    yAxisID: 'y2', borderColor: '#c77c02', borderDash: [4, 3] });
    if (window.Chart) {
      new Chart(canvas, { type: 'line', data: { labels, datasets },
        options: { animation: false, maintainAspectRatio: false,
                   plugins: { tooltip: { callbacks: { afterLabel: c => { const s = course.studies[c.dataIndex];
                     return 'trend ' + s.trend + (s.band ? ', ' + s.band : ''); } } } },
                   scales: { y: { title: { display: true, text: 'PXS' } },
                             y2: { display: calibrated, position: 'right', title: { display: true, text: course.calibrated_scale } } } } });
    }
    view.append(table(['Date', 'Accession', 'PXS', 'Calibrated', 'Change', 'Trend', 'Band', 'Study'],
      course.studies.map(s => [date(s.study_date, s.study_time), s.accession_number, s.pxs.toFixed(2),
        s.calibrated == null ? '-' : s.calibrated.toFixed(2) + ' ' + s.calibrated_scale,
        s.change == null ? '-' : (s.change > 0 ? '+' : '') + s.change.toFixed(2),
        el('span', { class: 'trend-' + s.trend.replace(' ', '-') }, s.trend), s.band || '-',
        el('a', { href: '#/studies/' + encodeURIComponent(s.study_uid) }, s.study_uid)])));
  }
  if (h.courses.length === 0) view.append(el('p', {}, 'No scored studies yet.'));
}

async function studyPage(uid) {
  const studies = await api('/studies/' + encodeURIComponent(uid));
  view.replaceChildren(el('h2', {}, 'Study ' + uid));
  for (const s of studies) {
    view.append(el('p', {}, 'Patient ', el('a', { href: '#/patients/' + encodeURIComponent(s.patient_id || '') }, s.patient_id || '(no id)'),
                ', date ' + date(s.study_date, s.study_time) + ', accession ' + (s.accession_number || '-')),
      table(['SOP Instance UID', 'View', 'State', 'PXS', 'Calibrated', 'Model', 'Received'],
        s.instances.map(i => [i.sop_instance_uid, i.view_position || '-', i.state + (i.reason ? ' (' + i.reason + ')' : ''),
          i.pxs == null ? '-' : i.pxs.toFixed(2), i.calibrated == null ? '-' : i.calibrated.toFixed(2) + ' ' + i.calibrated_scale,
          i.model || '-', i.received_at])),
      el('h3', {}, 'Reports'),
      table(['SR UID', 'Version', 'Destination', 'State', 'Attempts', 'Last error'],
        s.reports.map(d => [d.sr_sop_instance_uid, d.version, d.destination, d.state, d.attempts, d.last_error || '-'])));
  }
}

async function queuePage() {
  const q = await api('/queue');
  view.replaceChildren(el('h2', {}, 'Queue: ' + q.queued + ' queued, ' + q.scoring + ' scoring, ' + q.reports_pending + ' reports pending'),
    table(['Job', 'State', 'Attempts', 'Received', 'From AE', 'SOP Instance UID'],
      q.jobs.map(j => [j.job_id, j.state, j.attempts, j.received_at, j.calling_ae || '-', j.sop_instance_uid])));
}

async function failuresPage() {
  const f = await api('/failures');
  const retry = uid => async () => {
    try {
      const r = await api('/retry', { method: 'POST', headers: { Authorization: 'Bearer ' + token(), 'Content-Type': 'application/json' },
                                      body: JSON.stringify(uid ? { sop_instance_uid: uid } : { all_failed: true }) });
      alert('Requeued ' + r.jobs_requeued + ' job(s), ' + r.reports_requeued + ' report(s)');
      route();
    } catch (e) { alert(e.message); }
  };
  const button = (label, fn) => { const b = el('button', { type: 'button' }, label); b.addEventListener('click', fn); return b; };
  view.replaceChildren(el('h2', {}, 'Failures'), button('Retry all failed (admin)', retry(null)),
    el('h3', {}, 'Scoring jobs'),
    table(['SOP Instance UID', 'Attempts', 'Failed at', 'Reason', ''],
      f.jobs.map(j => [j.sop_instance_uid, j.attempts, j.failed_at, j.reason, button('Retry', retry(j.sop_instance_uid))])),
    el('h3', {}, 'Report deliveries'),
    table(['SR UID', 'Destination', 'Attempts', 'Last error'], f.reports.map(d => [d.sr_sop_instance_uid, d.destination, d.attempts, d.last_error])));
}

async function modelsPage() {
  const models = await api('/models');
  view.replaceChildren(el('h2', {}, 'Models'));
  view.append(table(['Model', 'Scoring now', 'Scores', 'First scored', 'Last scored'],
    models.map(m => [m.model, m.loaded ? 'yes' : 'no', m.scores, m.first_scored_at || '', m.last_scored_at || ''])));
  for (const m of models) {
    view.append(el('h3', {}, m.model + (m.not_for_clinical_use ? ' \u2014 NOT FOR CLINICAL USE' : '')),
                el('pre', {}, JSON.stringify(m.metadata, null, 2)));
  }
}

function fail(e) {
  if (e && e.auth) return askToken(e.message);
  view.replaceChildren(el('p', { class: 'error', id: 'error' }, 'Error: ' + (e && e.message ? e.message : e)));
}

async function route() {
  if (!token()) return askToken();
  const hash = window.location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  showModelsBanner();
  try {
    if (parts.length === 0) await patientsPage();
    else if (parts[0] === 'patients' && parts.length === 2) await patientPage(parts[1], query || '');
    else if (parts[0] === 'studies' && parts.length === 2) await studyPage(parts[1]);
    else if (parts[0] === 'queue') await queuePage();
    else if (parts[0] === 'failures') await failuresPage();
    else if (parts[0] === 'models') await modelsPage();
    else view.replaceChildren(el('p', {}, 'Unknown page.'));
    document.body.dataset.loaded = hash;
  } catch (e) { fail(e); }
}

document.getElementById('logout').addEventListener('click', () => { sessionStorage.removeItem('pxs-token'); route(); });
window.addEventListener('hashchange', route);
route();
