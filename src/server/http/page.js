// keyftpd's upload control: the resumable upload of CN101174954A in a
// page. For each picked or dropped file: CRC-32 while reading it (the
// key), ask the server for the upload's state (GET NAME?state), then POST
// multipart/form-data with offset, key and the file from that offset. On a
// network error, ask again after a backoff and continue from the server's
// size; after a reload, picking the same file continues the same way.
"use strict";
(function () {
  const drop = document.getElementById("drop");
  const pick = document.getElementById("pick");
  if (!drop || !pick) return;
  const uploads = document.getElementById("uploads");
  // Exposed for tests and for the curious: one record per file.
  const records = (window.keyftpdUploads = []);

  const TABLE = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    TABLE[n] = c >>> 0;
  }
  function crcUpdate(crc, buf) {
    let c = ~crc >>> 0;
    for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
    return ~c >>> 0;
  }
  const hex = (k) => "0x" + k.toString(16).toUpperCase().padStart(8, "0");
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const FIRST_PIECE = 64 << 10;

  function size(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function secs(s) {
    if (!isFinite(s)) return "?";
    s = Math.round(s);
    return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }

  // One row of the progress list.
  function Row(file) {
    const el = document.createElement("div");
    el.className = "up";
    el.innerHTML = '<div class="line"><span class="name"></span><span class="msg"></span></div>' +
      '<progress max="1" value="0"></progress><div class="line"><span class="done"></span><span class="rate"></span></div>';
    el.querySelector(".name").textContent = file.name;
    uploads.appendChild(el);
    const rec = { name: file.name, size: file.size, state: "queued", key: null,
                  offsets: [], sent: 0, attempts: 0, message: "" };
    records.push(rec);
    let samples = [];
    return {
      rec,
      state(s, msg) {
        rec.state = s;
        rec.message = msg;
        el.dataset.state = s;
        el.querySelector(".msg").textContent = msg;
      },
      progress(done, total, label) {
        const p = el.querySelector("progress");
        p.max = total || 1;
        p.value = done;
        el.querySelector(".done").textContent = label + " " + size(done) + " of " + size(total);
      },
      // Upload progress: rate over the last few seconds, time left.
      rate(done, total) {
        const now = performance.now();
        samples.push([now, done]);
        while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
        const [t0, d0] = samples[0];
        const r = now > t0 ? ((done - d0) * 1000) / (now - t0) : 0;
        el.querySelector(".rate").textContent =
          r > 0 ? size(r) + "/s, " + secs((total - done) / r) + " left" : "";
      },
      resetRate() { samples = []; el.querySelector(".rate").textContent = ""; },
    };
  }

  async function checksum(file, row) {
    const step = 4 << 20;
    let crc = 0;
    for (let o = 0; o < file.size; o += step) {
      const b = new Uint8Array(await file.slice(o, o + step).arrayBuffer());
      crc = crcUpdate(crc, b);
      row.progress(o + b.length, file.size, "checksummed");
    }
    return hex(crc);
  }

  function target(name) {
    const dir = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
    return dir + encodeURIComponent(name);
  }

  async function askState(url) {
    const r = await fetch(url + "?state", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) {
      const e = new Error((await r.text()).trim() || "HTTP " + r.status);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }

  // POST the file from `offset`; resolves {status, text}, rejects on a
  // network error (a cut).
  function post(url, file, offset, end, key, row) {
    return new Promise((resolve, reject) => {
      const fd = new FormData();
      fd.append("offset", String(offset));
      fd.append("key", key);
      fd.append("file", file.slice(offset, end), file.name);
      const x = new XMLHttpRequest();
      x.open("POST", url);
      x.upload.onprogress = (ev) => {
        // The form's own bytes are few; count what was sent as file bytes.
        const done = Math.min(file.size, offset + ev.loaded);
        row.rec.sent = done;
        row.progress(done, file.size, "uploaded");
        row.rate(done, file.size);
      };
      x.onload = () => resolve({ status: x.status, text: x.responseText });
      x.onerror = () => reject(new Error("connection lost"));
      x.onabort = () => reject(new Error("aborted"));
      x.send(fd);
    });
  }

  async function upload(file, row) {
    row.state("checksumming", "computing CRC-32");
    const key = await checksum(file, row);
    row.rec.key = key;
    const url = target(file.name);
    let attempt = 0;
    for (;;) {
      row.rec.attempts = attempt + 1;
      let retry = "";
      try {
        const st = await askState(url);
        let offset = 0;
        if (st.key === key && st.size <= file.size) {
          if (st.complete && st.size === file.size) {
            row.progress(file.size, file.size, "uploaded");
            row.state("done", row.rec.offsets.length ? "complete" : "already there");
            return;
          }
          offset = st.size;
        }
        row.rec.offsets.push(offset);
        row.resetRate();
        row.state("uploading", offset ? "resuming at " + size(offset) : "uploading");
        // A browser may send a POST again by itself when a kept-alive
        // connection breaks; sent again at offset 0 it would replace what
        // the server kept. So offset 0 carries only a first piece, and the
        // rest goes at an offset, where a repeat gets 409 and writes nothing.
        const end = offset === 0 ? Math.min(file.size, FIRST_PIECE) : file.size;
        const r = await post(url, file, offset, end, key, row);
        if (r.status === 200) {
          const s = JSON.parse(r.text);
          if (s.complete) {
            row.progress(file.size, file.size, "uploaded");
            row.state("done", "complete (CRC " + key + ")");
            return;
          }
          if (end < file.size && s.size === end) continue;
          retry = "incomplete";
        } else if (r.status === 409 || r.status === 423 || r.status >= 500 || r.status === 408) {
          retry = "HTTP " + r.status;
        } else {
          row.state("failed", "HTTP " + r.status + ": " + r.text.trim());
          return;
        }
      } catch (e) {
        if (e.status && e.status < 500 && e.status !== 408) {
          row.state("failed", e.message);
          return;
        }
        retry = e.message;
      }
      attempt++;
      if (attempt > 20) {
        row.state("failed", retry + "; gave up");
        return;
      }
      // Backoff: 1, 2, 4, ... 30 s.
      const wait = Math.min(30, 2 ** Math.min(attempt - 1, 5));
      row.state("retrying", retry + "; retry " + attempt + " in " + wait + " s");
      await sleep(wait * 1000);
    }
  }

  let queue = Promise.resolve();
  function add(files) {
    for (const f of files) {
      const row = Row(f);
      row.state("queued", "waiting");
      queue = queue.then(() => upload(f, row)).catch((e) => row.state("failed", String(e)));
    }
  }
  pick.addEventListener("change", () => { add(pick.files); pick.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    add(e.dataTransfer.files);
  });
})();
