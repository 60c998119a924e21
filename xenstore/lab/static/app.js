// The live page of a pyxl host. Plain JavaScript, no build step.
//
// One EventSource (/events) brings a snapshot, then: "line" (the daemon's monitor
// line for each change: who, what, and the watch events it caused), "nodes" (the
// tree's changes), "domains" and "status". The tree is kept as one <li> per node,
// so that a change touches only its own row: a written node flashes, a new one
// glows, a removed one fades out. Every value comes from guests: only ever
// textContent, never HTML.
"use strict";

(() => {
  const XENBUS = {
    0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected",
    5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured",
  };
  const LOG_MAX = 400;
  // Subtrees shown folded at first: the page is about /local/domain.
  const FOLDED = new Set(["/vm", "/libxl", "/tool"]);
  const ACCESS = { n: "no access", r: "read", w: "write", b: "read and write" };

  const state = {
    nodes: new Map(),      // path -> {path, value, perms, owner}
    rows: new Map(),       // path -> <li>
    writers: new Map(),    // path -> the monitor line that last changed it
    domains: [],
    chips: new Map(),      // device end -> the state it showed (to flash a change)
    selected: null,
    snapshots: 0,
    lines: 0,
  };
  window.pyxl = state;  // for the curious, and for the browser test

  const $ = (id) => document.getElementById(id);
  const tree = $("tree");
  const log = $("log");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  const parentOf = (p) => (p === "/" ? null : p.lastIndexOf("/") <= 0 ? "/" : p.slice(0, p.lastIndexOf("/")));
  const nameOf = (p) => (p === "/" ? "/" : p.slice(p.lastIndexOf("/") + 1));
  const isXenbusState = (p, v) =>
    nameOf(p) === "state" && /^[0-8]$/.test(v) && /\/(device|backend)\/|\/console$/.test(parentOf(p) || "");
  // A colour per domain, the same on its card, its nodes and its lines (dom0: blue).
  const HUES = [340, 150, 270, 20, 185, 300, 95, 240];
  const hue = (domid) => (!Number.isInteger(domid) || domid === 0 ? 215 : HUES[(domid - 1) % HUES.length]);
  const domLabel = (domid) => (domid === 0 ? "dom0" : domid === null || domid === undefined ? "?" : `dom${domid}`);
  const who = (line) => `${line.domid === 0 ? "dom0" : `domain ${line.domid}`} (conn ${line.conn})`;

  function quote(value, max = 60) {
    const shown = value.length > max ? `${value.slice(0, max)}…` : value;
    return `"${shown}"`;
  }

  function restart(element, cls) {
    element.classList.remove(cls);
    void element.offsetWidth;  // a reflow, so that the animation runs again
    element.classList.add(cls);
  }

  function ownerChip(domid) {
    const chip = el("span", "owner", domLabel(domid));
    chip.style.setProperty("--hue", hue(domid));
    return chip;
  }

  function stateChip(value, prefix) {
    const chip = el("span", `xb xb${value}`, `${prefix || ""}${value} ${XENBUS[value] || ""}`.trim());
    chip.title = `XenbusState ${value}: ${XENBUS[value] || "?"}`;
    return chip;
  }

  // -- the tree -------------------------------------------------------------------------

  function makeRow(path) {
    const li = el("li", "node");
    li.dataset.path = path;
    const row = el("div", "row");
    const twisty = el("span", "twisty");
    twisty.addEventListener("click", (e) => {
      e.stopPropagation();
      li.classList.toggle("folded");
    });
    row.append(twisty, el("span", "name", nameOf(path)), el("span", "value"), el("span", "label"));
    row.addEventListener("click", () => select(path));
    row.addEventListener("mouseenter", (e) => showTip(path, e));
    row.addEventListener("mousemove", moveTip);
    row.addEventListener("mouseleave", hideTip);
    li.append(row, el("ul", "children"));
    if (FOLDED.has(path)) li.classList.add("folded");
    const up = parentOf(path);
    const parent = up === null ? null : state.rows.get(up);
    (parent ? parent.querySelector(":scope > ul.children") : tree.querySelector(":scope > ul")).append(li);
    if (parent) parent.classList.add("branch");
    state.rows.set(path, li);
    return li;
  }

  function fill(li, node) {
    const row = li.firstChild;
    const [, , valueSpan, labelSpan] = row.children;
    const hasChildren = li.classList.contains("branch");
    valueSpan.textContent = node.value === "" && hasChildren ? "" : `= ${quote(node.value)}`;
    labelSpan.replaceChildren();
    if (isXenbusState(node.path, node.value)) labelSpan.append(stateChip(node.value));
    labelSpan.append(ownerChip(node.owner));
    li.dataset.value = node.value;
    li.dataset.owner = node.owner;
  }

  function setNode(node, animate) {
    const known = state.rows.get(node.path);
    const li = known || makeRow(node.path);
    state.nodes.set(node.path, node);
    fill(li, node);
    const up = parentOf(node.path);
    if (up !== null && state.nodes.has(up)) fill(state.rows.get(up), state.nodes.get(up));
    if (animate) restart(li.firstChild, known ? "flash" : "born");
    if (state.selected === node.path) showDetails(node.path);
  }

  function removeNode(path, animate) {
    const li = state.rows.get(path);
    state.rows.delete(path);
    state.nodes.delete(path);
    if (!li) return;
    const drop = () => {
      const parent = li.parentElement && li.parentElement.closest("li.node");
      li.remove();
      if (parent && !parent.querySelector(":scope > ul.children > li")) {
        parent.classList.remove("branch");
        const node = state.nodes.get(parent.dataset.path);
        if (node) fill(parent, node);
      }
    };
    if (animate) {
      li.classList.add("dying");
      li.dataset.path = "";  // not found by the path any more: it is gone
      setTimeout(drop, 700);
    } else {
      drop();
    }
    if (state.selected === path) showDetails(path);
  }

  function applyDelta(delta, animate) {
    for (const path of delta.removed) removeNode(path, animate);
    for (const node of delta.set) setNode(node, animate);
    applyFilter();
    renderDomains();
  }

  function resetTree(nodes) {
    state.nodes.clear();
    state.rows.clear();
    tree.replaceChildren(el("ul", "root"));
    for (const node of nodes) setNode(node, false);
    applyFilter();
  }

  function applyFilter() {
    const q = $("tree-filter").value.trim();
    tree.classList.toggle("filtering", q !== "");
    if (!q) return;
    const shown = new Set();
    for (const path of state.rows.keys()) {
      if (!path.includes(q)) continue;
      for (let p = path; p !== null; p = parentOf(p)) shown.add(p);
    }
    for (const [path, li] of state.rows) li.classList.toggle("match", shown.has(path));
  }

  // -- what a node is: the tooltip and the details panel ----------------------------

  function permsText(node) {
    const [first, ...rest] = node.perms;
    const lines = [`owner: ${domLabel(node.owner)} (may do everything)`];
    if (first) lines.push(`everyone else: ${ACCESS[first[0]] || first[0]}`);
    for (const entry of rest) lines.push(`${domLabel(Number(entry.slice(1)))}: ${ACCESS[entry[0]] || entry[0]}`);
    return lines;
  }

  function writerText(path) {
    const line = state.writers.get(path);
    if (!line) return null;
    const time = new Date(line.time * 1000).toLocaleTimeString();
    return `last ${line.op} by ${who(line)} at ${time}`;
  }

  const tip = $("tip");
  function showTip(path, event) {
    const node = state.nodes.get(path);
    if (!node) return;
    tip.replaceChildren(el("div", "tip-path", path), el("div", "tip-perms", node.perms.join(" ")));
    for (const line of permsText(node)) tip.append(el("div", null, line));
    const writer = writerText(path);
    if (writer) tip.append(el("div", "tip-writer", writer));
    tip.hidden = false;
    moveTip(event);
  }
  function moveTip(event) {
    const x = Math.min(event.clientX + 16, window.innerWidth - tip.offsetWidth - 8);
    const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }
  function hideTip() { tip.hidden = true; }

  function select(path) {
    state.selected = path;
    for (const li of tree.querySelectorAll("li.selected")) li.classList.remove("selected");
    const li = state.rows.get(path);
    if (li) {
      li.classList.add("selected");
      for (let up = li.parentElement.closest("li.node"); up; up = up.parentElement.closest("li.node")) {
        up.classList.remove("folded");
      }
      li.firstChild.scrollIntoView({ block: "nearest" });
    }
    showDetails(path);
  }

  function showDetails(path) {
    const body = $("details-body");
    const node = state.nodes.get(path);
    body.replaceChildren(el("div", "d-path", path));
    if (!node) {
      body.append(el("p", "empty", "This node is gone."));
      return;
    }
    const value = el("pre", "d-value", node.value === "" ? "(empty)" : node.value);
    body.append(value);
    if (isXenbusState(path, node.value)) body.append(stateChip(node.value, "XenbusState "));
    const facts = el("dl", "d-facts");
    facts.append(el("dt", null, "owner"), el("dd"));
    facts.lastChild.append(ownerChip(node.owner));
    facts.append(el("dt", null, "perms"), el("dd", "mono", node.perms.join(" ")));
    body.append(facts);
    const explained = el("ul", "d-perms");
    for (const line of permsText(node)) explained.append(el("li", null, line));
    body.append(explained);
    const writer = writerText(path);
    if (writer) body.append(el("p", "d-writer", writer));
  }

  // -- the domains ----------------------------------------------------------------------

  function vdevName(type, devid) {
    const n = Number(devid);
    if (type !== "vbd" || !Number.isInteger(n)) return null;
    if (n >> 8 === 202) return `xvd${String.fromCharCode(97 + ((n & 0xff) >> 4))}`;
    if (n & (1 << 28)) return `xvd${String.fromCharCode(97 + ((n >> 8) & 0xfffff))}`;
    return null;
  }

  function devicesOf(domid) {
    const home = `/local/domain/${domid}`;
    const found = [];
    const add = (type, devid, frontend) => {
      const backend = state.nodes.get(`${frontend}/backend`);
      const fstate = state.nodes.get(`${frontend}/state`);
      if (!backend && !fstate) return;  // not a device (libxl's device/suspend, say)
      const bstate = backend ? state.nodes.get(`${backend.value}/state`) : undefined;
      found.push({ type, devid, frontend: fstate ? fstate.value : null, backend: bstate ? bstate.value : null });
    };
    if (state.nodes.has(`${home}/console/backend`)) add("console", "0", `${home}/console`);
    for (const path of state.nodes.keys()) {
      const m = path.startsWith(`${home}/device/`) && path.slice(home.length + 8).match(/^([^/]+)\/([^/]+)$/);
      if (m) add(m[1], m[2], path);
    }
    return found;
  }

  function backendsOf(domid) {
    const prefix = `/local/domain/${domid}/backend/`;
    const found = [];
    for (const [path, node] of state.nodes) {
      const m = path.startsWith(prefix) && path.slice(prefix.length).match(/^([^/]+)\/(\d+)\/([^/]+)\/state$/);
      if (m) found.push({ type: m[1], frontendDomid: m[2], devid: m[3], backend: node.value });
    }
    return found;
  }

  function chip(key, value, end) {
    const shown = value === null ? el("span", "xb xb-none", `${end} —`) : stateChip(value, `${end} `);
    shown.classList.add("end");
    if (state.chips.has(key) && state.chips.get(key) !== value) restart(shown, "flash");
    state.chips.set(key, value);
    return shown;
  }

  function renderDomains() {
    const box = $("domains");
    if (!state.domains.length) {
      box.replaceChildren(el("p", "empty", "No domains yet."));
      return;
    }
    const cards = [];
    for (const d of [...state.domains].sort((a, b) => a.domid - b.domid)) {
      const card = el("article", "domain");
      card.dataset.domid = d.domid;
      card.dataset.state = d.state;
      card.style.setProperty("--hue", hue(d.domid));
      const head = el("div", "dom-head");
      head.append(el("span", "dom-name", d.name), el("span", "dom-id", `domid ${d.domid}`));
      const facts = el("div", "dom-facts");
      facts.append(el("span", `dom-state st-${String(d.state).replace(/[^a-z-]/gi, "")}`, d.state));
      if (d.memory) facts.append(el("span", "fact", `${Math.round(d.memory / 1024)} MiB`));
      if (d.vcpus) facts.append(el("span", "fact", `${d.vcpus} vCPU${d.vcpus > 1 ? "s" : ""}`));
      card.append(head, facts);
      const devices = el("ul", "devices");
      for (const dev of devicesOf(d.domid)) {
        const item = el("li", "device");
        Object.assign(item.dataset, {
          type: dev.type, devid: dev.devid,
          frontendState: dev.frontend ?? "", backendState: dev.backend ?? "",
        });
        const name = vdevName(dev.type, dev.devid);
        item.append(el("span", "dev-name", `${dev.type} ${dev.devid}${name ? ` · ${name}` : ""}`));
        const key = `${d.domid}/${dev.type}/${dev.devid}`;
        item.append(chip(`${key}/b`, dev.backend, "backend"), chip(`${key}/f`, dev.frontend, "frontend"));
        devices.append(item);
      }
      const served = backendsOf(d.domid);
      if (served.length) {
        const item = el("li", "device served");
        item.append(el("span", "dev-name", `serves ${served.length} backend${served.length > 1 ? "s" : ""}`));
        for (const b of served) {
          const c = chip(`${d.domid}/serves/${b.type}/${b.frontendDomid}/${b.devid}`, b.backend,
            `${b.type} → dom${b.frontendDomid} `);
          item.append(c);
        }
        devices.append(item);
      }
      if (devices.children.length) card.append(devices);
      cards.push(card);
    }
    box.replaceChildren(...cards);
  }

  // -- the log: who wrote, who was told ------------------------------------------------

  function timeOf(line) {
    const t = new Date(line.time * 1000);
    return `${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, "0")}`;
  }

  function pathLink(path) {
    const a = el("span", "path", path);
    if (path.startsWith("/")) {
      a.classList.add("link");
      a.addEventListener("click", () => select(path));
    }
    return a;
  }

  function remember(line) {
    if (line.reply !== "OK" || line.tx) return;
    if (["WRITE", "MKDIR", "SET_PERMS", "RM"].includes(line.op)) state.writers.set(line.path, line);
    for (const change of line.changes || []) state.writers.set(change.path, { ...line, op: change.op });
  }

  function describe(line, what) {
    const op = line.op;
    if (line.path !== undefined) what.append(pathLink(line.path));
    if (op === "WRITE") {
      what.append(el("span", "eq", " = "), el("span", "val", quote(line.value, 80)));
      if (line.value_bytes) what.append(el("span", "dim", ` (${line.value_bytes} bytes)`));
      if (isXenbusState(line.path, line.value)) what.append(" ", stateChip(line.value));
    } else if (op === "SET_PERMS") {
      what.append(el("span", "val", ` ${line.perms}`));
    } else if (op === "WATCH" || op === "UNWATCH") {
      what.append(el("span", "dim", ` token ${line.token}`));
    } else if (op === "TRANSACTION_END") {
      const changes = line.changes || [];
      what.append(el("span", null, `commit of transaction ${line.tx}: ${changes.length} change${changes.length === 1 ? "" : "s"}`));
      if (changes.length) {
        const list = el("ul", "changes");
        for (const c of changes.slice(0, 8)) {
          const item = el("li", null, `${c.op} `);
          item.append(pathLink(c.path));
          if (c.value !== undefined) item.append(el("span", "val", ` = ${quote(c.value, 40)}`));
          if (c.value !== undefined && isXenbusState(c.path, c.value)) item.append(" ", stateChip(c.value));
          if (c.perms !== undefined) item.append(el("span", "val", ` ${c.perms}`));
          list.append(item);
        }
        if (changes.length > 8) list.append(el("li", "dim", `… and ${changes.length - 8} more`));
        what.append(list);
      }
    } else if (line.args) {
      const [domid, a, b] = line.args;
      const text = op === "INTRODUCE" ? `domain ${domid} (its ring's page ${a}, event channel ${b})`
        : op === "RELEASE" || op === "RESUME" ? `domain ${domid}`
        : op === "SET_TARGET" ? `domain ${domid} acts for domain ${a}`
        : line.args.join(" ");
      what.append(el("span", "val", text));
    }
  }

  function addLine(line, animate) {
    state.lines += 1;
    remember(line);
    const op = line.op;
    // An abort or an empty commit that told nobody changed nothing: not worth a line.
    if (op === "TRANSACTION_END" && (!line.commit || (!(line.changes || []).length && !line.events.length))) return;
    const entry = el("li", `entry op-${op}`);
    if (op === "CONNECT" || op === "DISCONNECT") entry.classList.add("conn");
    if (line.tx && ["WRITE", "MKDIR", "RM", "SET_PERMS"].includes(op)) entry.classList.add("in-tx");
    if (line.reply && line.reply !== "OK") entry.classList.add("error");
    entry.style.setProperty("--hue", hue(line.domid));
    const head = el("div", "e-head");
    head.append(el("time", null, timeOf(line)), el("span", "who", who(line)), el("span", "op", op));
    if (line.tx && op !== "TRANSACTION_END" && op !== "WATCH" && op !== "UNWATCH") head.append(el("span", "txb", `tx ${line.tx}`));
    if (line.reply && line.reply !== "OK") head.append(el("span", "reply", line.reply));
    entry.append(head);
    const what = el("div", "e-what");
    describe(line, what);
    if (what.childNodes.length) entry.append(what);
    if (line.dropped) entry.append(el("div", "e-dropped", `${line.dropped} lines before this one were dropped by the daemon; the page read the store again`));
    if (line.events) {
      const told = el("div", "e-told");
      if (line.events.length) {
        told.append(el("span", "arrow", "→ told: "));
        // One watch told of several nodes (a commit) is one entry, its paths on hover.
        const changes = line.changes || [];
        const named = line.path ?? (changes.length === 1 ? changes[0].path : undefined);
        const watches = new Map();
        for (const e of line.events) {
          const key = `${e.conn} ${e.token}`;
          if (!watches.has(key)) watches.set(key, { event: e, paths: [] });
          watches.get(key).paths.push(e.path);
        }
        [...watches.values()].forEach(({ event: e, paths }, i) => {
          if (i) told.append(el("span", "sep", ", "));
          const t = el("span", "watcher", `${domLabel(e.domid)} conn ${e.conn}`);
          t.style.setProperty("--hue", hue(e.domid));
          const as = paths.length > 1 ? ` ×${paths.length}` : paths[0] !== named ? `, as ${paths[0]}` : "";
          const detail = el("span", "dim", ` (token ${e.token}${as})`);
          detail.title = paths.join("\n");
          told.append(t, detail);
        });
        if (line.events_omitted) told.append(el("span", "dim", ` and ${line.events_omitted} more`));
      } else if (line.tx && op !== "TRANSACTION_END" && op !== "WATCH" && op !== "UNWATCH") {
        told.append(el("span", "dim", `→ in transaction ${line.tx}: watchers are told when it commits`));
      } else if (op !== "CONNECT" && op !== "DISCONNECT") {
        told.append(el("span", "dim", "→ told: nobody"));
      }
      if (told.childNodes.length) entry.append(told);
    }
    if (animate) entry.classList.add("fresh");
    log.append(entry);
    while (log.children.length > LOG_MAX) log.firstChild.remove();
    if ($("follow").checked) log.scrollTop = log.scrollHeight;
  }

  // -- the stream -----------------------------------------------------------------------

  function setStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.className = `status ${kind}`;
  }

  function showDaemon(status) {
    if (status.daemon === "connected") setStatus(`live · ${status.socket}`, "live");
    else setStatus(`waiting for the daemon at ${status.socket}…`, "waiting");
  }

  function connect() {
    const events = new EventSource("/events");
    events.addEventListener("snapshot", (e) => {
      const snap = JSON.parse(e.data);
      state.snapshots += 1;
      state.writers.clear();
      resetTree(snap.nodes);
      log.replaceChildren();
      for (const line of snap.log) addLine(line, false);
      state.domains = snap.domains;
      renderDomains();
      showDaemon(snap.status);
      if (state.selected) showDetails(state.selected);
    });
    events.addEventListener("line", (e) => addLine(JSON.parse(e.data), true));
    events.addEventListener("nodes", (e) => applyDelta(JSON.parse(e.data), true));
    events.addEventListener("domains", (e) => {
      state.domains = JSON.parse(e.data);
      renderDomains();
    });
    events.addEventListener("status", (e) => showDaemon(JSON.parse(e.data)));
    events.onerror = () => setStatus("the page lost its server; reconnecting…", "lost");
  }

  // The log keeps its newest line in sight while "follow" is on, whatever resizes it
  // (the node panel above grows when a node is clicked).
  new ResizeObserver(() => {
    if ($("follow").checked) log.scrollTop = log.scrollHeight;
  }).observe(log);

  $("tree-filter").addEventListener("input", applyFilter);
  for (const [box, cls] of [["show-connections", "show-connections"], ["show-tx", "show-tx"]]) {
    $(box).addEventListener("change", (e) => document.body.classList.toggle(cls, e.target.checked));
  }
  connect();
})();
