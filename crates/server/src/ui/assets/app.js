// Wayfinder UI: fills /ui from the agent's public API. No framework and no build step; it is
// served from the binary as written (crates/server/src/ui).
//
// Where each part comes from:
// - services, instances and their health: /v1/watch (Server-Sent Events). A `resync` carries
//   the whole state; `registered`, `deregistered` and `health` events change it as it happens.
// - check output and latency: /v1/health/state/any, polled, and fetched again after each event
//   (an output change alone writes nothing, so the watch stream does not carry it).
// - gateway routes: /v1/routes (404 when the agent runs without --gateway-addr).
// - per-instance request rate, error rate and latency: /v1/agent/metrics, polled; rates are the
//   differences between two polls, kept for a few minutes and drawn as SVG sparklines.
'use strict';

(() => {
  /** How often checks, routes and metrics are polled. */
  const POLL_MS = 2000;
  /** How many points a sparkline keeps (POLL_MS apart: two minutes). */
  const HISTORY = 60;
  /** The narrowest window a sparkline spans, in points, while it has fewer than HISTORY: a
   *  fresh page shows its first half minute across the chart rather than as a sliver. */
  const MIN_WINDOW = 15;
  /** How many events the feed shows. */
  const EVENTS_SHOWN = 40;
  /** How long after a watch event the checks are fetched again (events come in bursts). */
  const CHECKS_DEBOUNCE_MS = 150;
  /** How long one API read may take before it counts as failed (and polling goes on). */
  const FETCH_TIMEOUT_MS = 10000;
  /** How long to wait before opening a watch stream the server closed for good. */
  const RECONNECT_MS = 3000;
  const STATUSES = ['passing', 'warning', 'critical'];
  const REQUESTS = 'wayfinder_gateway_requests_total';
  const DURATION = 'wayfinder_gateway_request_duration_seconds';

  const state = {
    /** service name -> Map(instance id -> instance as /v1/watch sends it) */
    services: new Map(),
    /** instance id -> its checks, as /v1/health/state/any answers them */
    checks: new Map(),
    /** null until the first poll; {off: true} without a gateway; else {routes: [...]} */
    gateway: null,
    /** `route\u0000instance` -> {last, rate: [], errors: [], latency: []} */
    series: new Map(),
    events: [],
    index: 0,
    selected: selectedInHash(),
    filter: '',
    errors: new Map(),
  };

  // ----------------------------------------------------------------------------------------
  // DOM helpers: every text goes in through textContent, never as HTML.

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  /** The service named in the address (`#service=web`), so a link opens on it. */
  function selectedInHash() {
    try {
      return decodeURIComponent((location.hash.match(/^#service=(.+)$/) || [])[1] || '');
    } catch {
      return ''; // a malformed %-escape: no selection
    }
  }

  const worst = (statuses) =>
    statuses.reduce((w, s) => (STATUSES.indexOf(s) > STATUSES.indexOf(w) ? s : w), 'passing');

  // ----------------------------------------------------------------------------------------
  // The watch stream.

  // ----------------------------------------------------------------------------------------
  // The ACL token: kept for this tab only, sent as X-Consul-Token (fetch) or ?token= (an
  // EventSource cannot send headers).

  const TOKEN_KEY = 'wayfinder-token';
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  function askToken() {
    const given = window.prompt('ACL token for this tab (empty for none):', token());
    if (given === null) return;
    if (given.trim()) sessionStorage.setItem(TOKEN_KEY, given.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
    window.location.reload();
  }

  function connect() {
    setConnection('connecting');
    const source = new EventSource(
      token() ? `/v1/watch?token=${encodeURIComponent(token())}` : '/v1/watch',
    );
    source.addEventListener('open', () => setConnection('live'));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // A non-200 answer (the agent is shutting down): EventSource gives up, so we retry.
        setConnection('down');
        setTimeout(connect, RECONNECT_MS);
      } else {
        setConnection('reconnecting');
      }
    });
    source.addEventListener('resync', (e) => {
      const data = JSON.parse(e.data);
      state.services = new Map();
      for (const [name, instances] of Object.entries(data.services || {})) {
        state.services.set(name, new Map(instances.map((i) => [i.id, i])));
      }
      state.index = data.index;
      const instances = [...state.services.values()].reduce((n, m) => n + m.size, 0);
      note({ kind: 'resync', index: data.index, summary: `${state.services.size} services, ${instances} instances` });
      setConnection('live');
      refreshChecksSoon();
      render();
    });
    for (const kind of ['registered', 'deregistered', 'health']) {
      source.addEventListener(kind, (e) => applyEvent(JSON.parse(e.data)));
    }
  }

  function applyEvent(event) {
    const instances = state.services.get(event.service) || new Map();
    if (event.instance) {
      instances.set(event.id, event.instance);
      state.services.set(event.service, instances);
    } else {
      instances.delete(event.id);
      if (instances.size === 0) state.services.delete(event.service);
    }
    state.index = Math.max(state.index, event.index);
    note(event);
    refreshChecksSoon();
    render();
  }

  /** Adds an event to the feed, newest first. */
  function note(event) {
    state.events.unshift({ at: new Date(), ...event });
    state.events.length = Math.min(state.events.length, EVENTS_SHOWN);
  }

  function setConnection(connection) {
    const node = $('conn');
    node.dataset.state = connection;
    $('conn-text').textContent =
      connection === 'live' ? `live · index ${state.index}` : connection;
  }

  // ----------------------------------------------------------------------------------------
  // Polling.

  async function getJson(path) {
    const headers = { Accept: 'application/json' };
    if (token()) headers['X-Consul-Token'] = token();
    const response = await fetch(path, {
      headers,
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    if (!response.ok) {
      const error = new Error(`${path}: HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  /** Runs `job`, remembering its failure under `name` for the notice bar. */
  async function guarded(name, job) {
    try {
      await job();
      state.errors.delete(name);
    } catch (error) {
      state.errors.set(name, error.message || String(error));
    }
  }

  async function refreshChecks() {
    const checks = await getJson('/v1/health/state/any');
    const byInstance = new Map();
    for (const check of checks) {
      if (!check.ServiceID) continue; // node checks (serfHealth) belong to no instance
      if (!byInstance.has(check.ServiceID)) byInstance.set(check.ServiceID, []);
      byInstance.get(check.ServiceID).push(check);
    }
    state.checks = byInstance;
  }

  let checksTimer = null;
  function refreshChecksSoon() {
    clearTimeout(checksTimer);
    checksTimer = setTimeout(
      () => guarded('checks', refreshChecks).then(render),
      CHECKS_DEBOUNCE_MS,
    );
  }

  async function refreshGateway() {
    try {
      state.gateway = { routes: (await getJson('/v1/routes')).routes || [] };
    } catch (error) {
      if (error.status !== 404) throw error;
      state.gateway = { off: true };
      state.series.clear();
      return;
    }
    recordMetrics(await getJson('/v1/agent/metrics'));
  }

  /** Turns the counters of one poll into one more point of every instance's series. */
  function recordMetrics(metrics) {
    const now = performance.now();
    const current = new Map();
    const entry = (labels) => {
      const key = `${labels.route}\u0000${labels.instance}`;
      if (!current.has(key)) current.set(key, { total: 0, errors: 0, count: 0, sum: 0 });
      return current.get(key);
    };
    for (const counter of metrics.Counters || []) {
      if (counter.Name !== REQUESTS || !counter.Labels) continue;
      const e = entry(counter.Labels);
      e.total += Number(counter.Count) || 0;
      if (counter.Labels.class === '5xx') e.errors += Number(counter.Count) || 0;
    }
    for (const sample of metrics.Samples || []) {
      if (sample.Name !== DURATION || !sample.Labels) continue;
      const e = entry(sample.Labels);
      e.count += Number(sample.Count) || 0;
      e.sum += Number(sample.Sum) || 0;
    }
    for (const [key, now_] of current) {
      let series = state.series.get(key);
      if (!series) {
        series = { last: null, rate: [], errors: [], latency: [] };
        state.series.set(key, series);
      }
      const last = series.last;
      if (last && now > last.at) {
        const seconds = (now - last.at) / 1000;
        // A counter that went down belongs to a new route or instance: start again from it.
        const requests = Math.max(0, now_.total - last.total);
        const errors = Math.max(0, now_.errors - last.errors);
        const count = Math.max(0, now_.count - last.count);
        push(series.rate, requests / seconds);
        push(series.errors, requests > 0 ? (100 * errors) / requests : 0);
        push(series.latency, count > 0 ? (1000 * (now_.sum - last.sum)) / count : null);
      }
      series.last = { at: now, ...now_ };
    }
    for (const key of [...state.series.keys()]) {
      if (!current.has(key)) state.series.delete(key);
    }
  }

  function push(points, value) {
    points.push(value);
    if (points.length > HISTORY) points.shift();
  }

  async function refreshAgent() {
    const self = await getJson('/v1/agent/self');
    const config = self.Config || {};
    $('agent').replaceChildren(
      'node ', el('b', { text: config.NodeName || '?' }),
      ' · datacenter ', el('b', { text: config.Datacenter || '?' }),
      ' · version ', el('b', { text: config.Version || '?' }),
    );
  }

  async function poll() {
    await Promise.all([guarded('checks', refreshChecks), guarded('gateway', refreshGateway)]);
    render();
    setTimeout(poll, POLL_MS);
  }

  // ----------------------------------------------------------------------------------------
  // Rendering: each section is rebuilt from `state` at most once per frame.

  let frame = 0;
  function render() {
    if (!frame) frame = requestAnimationFrame(() => {
      frame = 0;
      renderAll();
    });
  }

  function renderAll() {
    const services = summarize();
    if (!services.some((s) => s.name === state.selected)) {
      const first = services.find((s) => s.health !== 'passing') || services[0];
      state.selected = first ? first.name : '';
    }
    renderSummary(services);
    renderServices(services);
    renderInstances();
    renderGateway();
    renderEvents();
    const notice = $('notice');
    notice.hidden = state.errors.size === 0;
    notice.textContent = [...state.errors.values()].join(' · ');
    if ($('conn').dataset.state === 'live') setConnection('live');
  }

  /** Every service with its instances' health counts, sorted by name. */
  function summarize() {
    return [...state.services.entries()]
      .map(([name, instances]) => {
        const list = [...instances.values()];
        const counts = { passing: 0, warning: 0, critical: 0 };
        for (const instance of list) counts[instance.status] = (counts[instance.status] || 0) + 1;
        const tags = [...new Set(list.flatMap((i) => i.tags || []))].sort();
        return { name, instances: list, counts, tags, health: worst(list.map((i) => i.status)) };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  function renderSummary(services) {
    const totals = { passing: 0, warning: 0, critical: 0 };
    for (const s of services) for (const k of STATUSES) totals[k] += s.counts[k];
    let rate = 0;
    for (const series of state.series.values()) rate += series.rate[series.rate.length - 1] || 0;
    const card = (label, value, status, unit) =>
      el('div', { class: 'card', 'data-status': status },
        el('div', { class: 'label', text: label }),
        el('div', { class: 'value' }, String(value), unit ? el('small', { text: unit }) : null));
    $('summary').replaceChildren(
      card('Services', services.length),
      card('Instances', services.reduce((n, s) => n + s.instances.length, 0)),
      card('Passing', totals.passing, 'passing'),
      card('Warning', totals.warning, 'warning'),
      card('Critical', totals.critical, 'critical'),
      card('Gateway', state.gateway && !state.gateway.off ? formatRate(rate) : '—', null,
        state.gateway && !state.gateway.off ? 'req/s' : null),
    );
  }

  function renderServices(services) {
    const filter = state.filter.trim().toLowerCase();
    const shown = services.filter((s) =>
      !filter || s.name.toLowerCase().includes(filter) || s.tags.some((t) => t.toLowerCase().includes(filter)));
    $('services').replaceChildren(...shown.map((s) => {
      const total = s.instances.length || 1;
      const select = () => {
        state.selected = s.name;
        history.replaceState(null, '', `#service=${encodeURIComponent(s.name)}`);
        render();
      };
      return el('tr', {
        'data-service': s.name, 'data-health': s.health, tabindex: 0,
        'aria-selected': String(s.name === state.selected),
        onclick: select,
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(); } },
      },
      el('td', {},
        el('div', { class: 'svc-name' }, el('span', { class: `dot-status ${s.health}` }), s.name),
        s.tags.length ? el('div', { class: 'tags' }, s.tags.slice(0, 4).map((t) => el('span', { class: 'tag', text: t }))) : null),
      el('td', { class: 'bar-col' }, bar(s.counts, total)),
      ...STATUSES.map((k) => el('td', { class: 'num' },
        el('span', { class: `count ${k}${s.counts[k] ? ' some' : ''}`, 'data-count': k, text: s.counts[k] }))));
    }));
    $('services-empty').hidden = services.length > 0;
    $('services-empty').textContent = services.length ? '' : 'No services registered yet.';
  }

  function bar(counts, total) {
    const node = el('div', { class: 'bar', title: STATUSES.map((k) => `${counts[k]} ${k}`).join(', ') });
    for (const k of STATUSES) {
      if (!counts[k]) continue;
      const part = el('span', { class: k });
      part.style.width = `${(100 * counts[k]) / total}%`;
      node.append(part);
    }
    return node;
  }

  function renderInstances() {
    const instances = state.services.get(state.selected);
    $('detail-title').textContent = state.selected ? `Instances of ${state.selected}` : 'Instances';
    if (!instances) {
      $('detail-sub').textContent = '';
      $('instances').replaceChildren(el('p', { class: 'empty', text: 'Select a service.' }));
      return;
    }
    const list = [...instances.values()].sort((a, b) =>
      STATUSES.indexOf(b.status) - STATUSES.indexOf(a.status) || a.id.localeCompare(b.id));
    $('detail-sub').textContent = `${list.length} instance${list.length === 1 ? '' : 's'}`;
    $('instances').replaceChildren(...list.map((instance) => {
      const checks = state.checks.get(instance.id) || [];
      return el('div', { class: 'instance', 'data-instance': instance.id, 'data-status': instance.status },
        el('div', { class: 'instance-head' },
          el('span', { class: `dot-status ${instance.status}` }),
          el('span', { class: 'id', text: instance.id }),
          el('span', { class: 'addr', text: `${instance.host}:${instance.port}` }),
          (instance.tags || []).length ? el('span', { class: 'tags' }, instance.tags.map((t) => el('span', { class: 'tag', text: t }))) : null,
          el('span', { class: 'spacer' }),
          el('span', { class: 'muted', text: `weight ${instance.weight}` }),
          el('span', { class: `pill ${instance.status}`, text: instance.status })),
        checks.length
          ? el('table', {},
            el('thead', {}, el('tr', {},
              el('th', { class: 'c-name', text: 'Check' }), el('th', { class: 'c-status', text: 'Status' }),
              el('th', { text: 'Last output' }), el('th', { class: 'c-latency num', text: 'Latency' }))),
            el('tbody', {}, checks.map((c) => el('tr', { 'data-check': c.CheckID, 'data-status': c.Status },
              el('td', {}, c.Name || c.CheckID, c.Type ? el('span', { class: 'check-type', text: c.Type }) : null),
              el('td', {}, el('span', { class: `pill ${c.Status}`, text: c.Status })),
              el('td', {}, el('div', { class: 'output', title: c.Output || '', text: c.Output || '—' })),
              el('td', { class: 'num mono latency', text: c.Latency || '—' })))))
          : el('p', { class: 'empty', text: 'No checks: always passing.' }));
    }));
  }

  function renderGateway() {
    const gateway = state.gateway;
    const routes = $('routes');
    if (!gateway) {
      routes.replaceChildren(el('p', { class: 'empty', text: 'Loading…' }));
      return;
    }
    if (gateway.off) {
      $('gateway-sub').textContent = 'off';
      routes.replaceChildren(el('p', { class: 'empty', text: 'The gateway is off: start the agent with --gateway-addr to route requests.' }));
      return;
    }
    $('gateway-sub').textContent = `${gateway.routes.length} route${gateway.routes.length === 1 ? '' : 's'} · last ${Math.round((HISTORY * POLL_MS) / 60000)} min`;
    if (gateway.routes.length === 0) {
      routes.replaceChildren(el('p', { class: 'empty', text: 'No routes: tag instances urlprefix-/path or add route blocks.' }));
      return;
    }
    routes.replaceChildren(...gateway.routes.map((route) => {
      const name = `${route.host || ''}${route.prefix}`;
      const rows = route.instances.map((instance) => {
        const series = state.series.get(`${name}\u0000${instance.id}`) || { rate: [], errors: [], latency: [] };
        return el('tr', { 'data-route-instance': instance.id },
          el('td', {},
            el('span', { class: `dot-status ${instance.health}` }), ' ', instance.id,
            instance.ejected ? el('span', { class: 'ejected', text: 'EJECTED' }) : null),
          el('td', { class: 'mono muted', text: instance.address }),
          el('td', { class: 'num', text: instance.in_flight }),
          el('td', {}, metric(series.rate, 'rate', formatRate, 'req/s')),
          el('td', {}, metric(series.errors, 'errors', (v) => v.toFixed(1), '%', 100)),
          el('td', {}, metric(series.latency, 'latency', formatMs, 'ms')));
      });
      let rate = 0;
      for (const instance of route.instances) {
        const series = state.series.get(`${name}\u0000${instance.id}`);
        if (series) rate += series.rate[series.rate.length - 1] || 0;
      }
      return el('div', { class: 'route', 'data-route': name },
        el('div', { class: 'route-head' },
          el('span', { class: 'prefix', text: name }),
          el('span', { class: 'arrow', text: '→' }),
          el('b', { text: route.service }),
          el('span', { class: 'tag', text: route.strategy }),
          route.split ? el('span', { class: 'tag', text: `split ${route.split.tag} ${+(route.split.weight * 100).toFixed(2)}%` }) : null,
          el('span', { class: 'totals', text: `${formatRate(rate)} req/s · ${route.source}` })),
        route.instances.length
          ? el('table', {},
            el('thead', {}, el('tr', {},
              el('th', { text: 'Instance' }), el('th', { text: 'Address' }), el('th', { class: 'num', text: 'In flight' }),
              el('th', { class: 'num', text: 'Requests' }), el('th', { class: 'num', text: 'Errors (5xx)' }),
              el('th', { class: 'num', text: 'Latency (mean)' }))),
            el('tbody', {}, rows))
          : el('p', { class: 'empty', text: 'No healthy instance: requests get 503.' }));
    }));
  }

  /** A sparkline of `points` (null: no data then) with the latest value beside it. */
  function metric(points, kind, format, unit, fixedMax) {
    const known = points.filter((p) => p !== null && Number.isFinite(p));
    const latest = points.length ? points[points.length - 1] : null;
    return el('div', { class: 'metric' },
      sparkline(points, kind, fixedMax !== undefined ? fixedMax : Math.max(...known, 0)),
      el('span', { class: 'v', text: latest === null ? '—' : `${format(latest)} ${unit}` }));
  }

  function sparkline(points, kind, max) {
    const width = 92;
    const height = 26;
    const node = svg('svg', { class: `spark ${kind}`, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', 'data-points': points.length });
    node.append(svg('line', { class: 'base', x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
    const step = width / (Math.max(points.length, MIN_WINDOW) - 1);
    const x0 = width - (points.length - 1) * step;
    const scale = max > 0 ? (height - 3) / max : 0;
    let line = '';
    let area = '';
    let runStart = null;
    const closeRun = (xEnd) => {
      if (runStart !== null) area += `L${xEnd.toFixed(1)},${height}L${runStart.toFixed(1)},${height}Z`;
      runStart = null;
    };
    points.forEach((value, i) => {
      const x = x0 + i * step;
      if (value === null || !Number.isFinite(value)) {
        closeRun(x - step);
        return;
      }
      const y = (height - 1 - Math.min(value, max) * scale).toFixed(1);
      const move = runStart === null;
      if (move) runStart = x;
      line += `${move ? 'M' : 'L'}${x.toFixed(1)},${y}`;
      area += `${move ? 'M' : 'L'}${x.toFixed(1)},${y}`;
    });
    closeRun(x0 + (points.length - 1) * step);
    if (area) node.append(svg('path', { class: 'area', d: area }));
    if (line) node.append(svg('path', { class: 'line', d: line }));
    return node;
  }

  function renderEvents() {
    $('events').replaceChildren(...state.events.map((e) => {
      const label = e.kind === 'health' ? e.to : e.kind;
      return el('li', { 'data-event': e.kind },
        el('span', { class: 'time', text: e.at.toLocaleTimeString([], { hour12: false }) }),
        el('span', { class: `kind ${label}`, text: label }),
        e.kind === 'resync'
          ? el('span', { class: 'what muted', text: `full state: ${e.summary}` })
          : el('span', { class: 'what' },
            el('b', { text: e.service }), ' / ', e.id,
            e.kind === 'health' ? el('span', { class: 'muted', text: ` was ${e.from}` }) : null));
    }));
    $('events-empty').hidden = state.events.length > 0;
  }

  function formatRate(value) {
    return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  function formatMs(value) {
    return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2);
  }

  // ----------------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('filter').addEventListener('input', (e) => {
      state.filter = e.target.value;
      render();
    });
    $('token').addEventListener('click', askToken);
    $('token').textContent = token() ? 'token ✓' : 'token';
    guarded('agent', refreshAgent).then(render);
    connect();
    poll();
  });
})();
