// The Keyway node's status page (issue 16, item 7). It pairs with the node
// over the WebSocket by an ephemeral P-256 ECDH that both sides authenticate
// with the one-time token from the URL fragment, then asks for the node's
// status in AES-GCM frames numbered per direction. The Rust side of every
// step is in the crate keyway-node-ui (key_schedule.rs, pairing.rs,
// channel.rs): labels, lengths and message types must stay identical.
"use strict";

(() => {
  const HELLO = 0x01, KEY = 0x02, CONFIRM = 0x03, PROOF = 0x04, SEALED = 0x10;
  const PUBLIC_KEY_LEN = 65, MAC_LEN = 32, HEADER_LEN = 9, TAG_LEN = 16;
  const POLL_MS = 3000;
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const label = (s) => enc.encode("keyway-ui/1 " + s);
  const subtle = window.crypto.subtle;

  const $ = (id) => document.getElementById(id);

  function setState(state, text) {
    const el = $("state");
    el.dataset.state = state;
    el.textContent = text;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function decodeToken(text) {
    if (!/^[A-Za-z0-9_-]{43}$/.test(text)) throw new Error("the pairing link is malformed");
    const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=");
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }

  async function hkdf(ikm, salt, info) {
    const key = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
    const bits = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, key, 256);
    return new Uint8Array(bits);
  }

  // Messages in arrival order; a close rejects the waiting reader with its reason.
  function inbox(ws) {
    const queue = [];
    const waiting = [];
    let ended = null;
    ws.onmessage = (ev) => {
      const msg = new Uint8Array(ev.data);
      const w = waiting.shift();
      if (w) w.resolve(msg);
      else queue.push(msg);
    };
    ws.onclose = (ev) => {
      ended = new Error(ev.reason ? `${ev.reason} (${ev.code})` : `connection closed (${ev.code})`);
      ended.closed = true;
      for (const w of waiting.splice(0)) w.reject(ended);
    };
    return {
      next() {
        if (queue.length) return Promise.resolve(queue.shift());
        if (ended) return Promise.reject(ended);
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      },
    };
  }

  function expect(msg, type, len, what) {
    if (msg.length !== len || msg[0] !== type) throw new Error(`the node sent a malformed ${what} message`);
    return msg.subarray(1);
  }

  // One direction's AES-GCM state: nonce = counter in 12 big-endian bytes,
  // associated data = the 9-byte header (type byte, counter).
  function header(counter) {
    const h = new Uint8Array(HEADER_LEN);
    h[0] = SEALED;
    new DataView(h.buffer).setBigUint64(1, counter);
    return h;
  }
  function nonce(counter) {
    const n = new Uint8Array(12);
    new DataView(n.buffer).setBigUint64(4, counter);
    return n;
  }

  async function pair(ws, messages, token) {
    const authRaw = await hkdf(token, new Uint8Array(0), label("pairing"));
    const authKey = await subtle.importKey("raw", authRaw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    const eph = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
    const clientPub = new Uint8Array(await subtle.exportKey("raw", eph.publicKey));
    ws.send(concat([HELLO], clientPub));

    const nodePub = expect(await messages.next(), KEY, 1 + PUBLIC_KEY_LEN, "key");
    const th = new Uint8Array(await subtle.digest("SHA-256", concat(label("transcript"), clientPub, nodePub)));
    const proof = new Uint8Array(await subtle.sign("HMAC", authKey, concat(label("client"), th)));
    ws.send(concat([CONFIRM], proof));

    const nodeProof = expect(await messages.next(), PROOF, 1 + MAC_LEN, "proof");
    if (!(await subtle.verify("HMAC", authKey, nodeProof, concat(label("server"), th)))) {
      ws.close(4001, "the node did not prove the pairing token");
      throw new Error("the node did not prove the pairing token");
    }
    const nodeKey = await subtle.importKey("raw", nodePub, { name: "ECDH", namedCurve: "P-256" }, false, []);
    const shared = new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: nodeKey }, eph.privateKey, 256));
    const aes = async (info) =>
      subtle.importKey("raw", await hkdf(shared, th, label(info)), "AES-GCM", false, ["encrypt", "decrypt"]);
    return { send: await aes("client to node"), recv: await aes("node to client") };
  }

  function channel(ws, keys) {
    let sendCounter = 0n;
    let recvCounter = 0n;
    let chain = Promise.resolve();
    return {
      // Sends go through one chain so frames leave in counter order.
      send(obj) {
        chain = chain.then(async () => {
          const counter = sendCounter++;
          const h = header(counter);
          const ct = await subtle.encrypt(
            { name: "AES-GCM", iv: nonce(counter), additionalData: h, tagLength: 128 },
            keys.send, enc.encode(JSON.stringify(obj)));
          ws.send(concat(h, new Uint8Array(ct)));
        });
        return chain;
      },
      async open(frame) {
        if (frame.length < HEADER_LEN + TAG_LEN || frame[0] !== SEALED) throw new Error("the node sent a malformed frame");
        const counter = new DataView(frame.buffer, frame.byteOffset).getBigUint64(1);
        if (counter !== recvCounter) throw new Error(`frame from the node out of order (${counter}, expected ${recvCounter})`);
        let plain;
        try {
          plain = await subtle.decrypt(
            { name: "AES-GCM", iv: nonce(counter), additionalData: frame.subarray(0, HEADER_LEN), tagLength: 128 },
            keys.recv, frame.subarray(HEADER_LEN));
        } catch {
          throw new Error("altered frame from the node");
        }
        recvCounter++;
        return JSON.parse(dec.decode(plain));
      },
    };
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    row.appendChild(td);
  }

  // Text only, never markup: peers choose some of these strings.
  function fill(tbodyId, items, columns) {
    const body = $(tbodyId);
    const rows = items.map((item) => {
      const tr = document.createElement("tr");
      for (const col of columns) cell(tr, col(item));
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns.length;
      td.className = "empty";
      td.textContent = "none";
      tr.appendChild(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function render(status) {
    $("identity").textContent = status.identity;
    $("listening").textContent = status.listening.length ? status.listening.join(", ") : "nothing";
    fill("links", status.links, [(l) => l.peer, (l) => l.address, (l) => l.direction, (l) => l.age_secs, (l) => l.bytes_in, (l) => l.bytes_out]);
    fill("peers", status.peers, [(p) => p.identity, (p) => p.capabilities.join(", "), (p) => p.blocked_for_secs]);
    fill("streams", status.streams, [(s) => s.public_key, (s) => s.path, (s) => s.records, (s) => (s.served ? "yes" : "no")]);
    $("status").hidden = false;
  }

  async function main() {
    const match = /^#pair=(.*)$/.exec(location.hash);
    // The token is single-use: out of the address bar and history at once.
    history.replaceState(null, "", location.pathname);
    if (!match) {
      setState("error", "No pairing token: open the ui= link the node printed.");
      return;
    }
    let token;
    try {
      token = decodeToken(match[1]);
    } catch (e) {
      setState("error", e.message);
      return;
    }
    setState("pairing", "Pairing…");
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    const messages = inbox(ws);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("cannot reach the node"));
    });
    let keys;
    try {
      keys = await pair(ws, messages, token);
    } catch (e) {
      setState("refused", `Pairing refused: ${e.message.replace(/^pairing refused: /, "")}`);
      return;
    }
    setState("paired", "Paired");
    const chan = channel(ws, keys);
    let nextId = 1;
    const poll = () => chan.send({ id: nextId++, method: "status" }).catch(() => {});
    poll();
    const timer = setInterval(poll, POLL_MS);
    try {
      for (;;) {
        const answer = await chan.open(await messages.next());
        if (answer.error) setState("error", `The node answered: ${answer.error}`);
        else if (answer.status) render(answer.status);
      }
    } catch (e) {
      clearInterval(timer);
      if (!e.closed) ws.close(4002, e.message.slice(0, 120));
      setState("closed", `Session closed: ${e.message}`);
    }
  }

  main().catch((e) => setState("error", e.message));
})();
