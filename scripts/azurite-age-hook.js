// Preloaded into Azurite by scripts/azurite-server (`node --require`), for tests only: a
// way to make a blob report an old Last-Modified, which Azurite has no API for (a write
// always stamps the server's clock). It finds Azurite's LokiJS metadata database (the same
// records `__azurite_db_blob__.json` holds on disk) and serves, on a second loopback port,
//
//   POST /age  {"account":..,"container":..,"blob":..,"lastModified":"<RFC 3339>"}
//
// which sets that blob's Last-Modified in place (listings and HEAD report it at once; its
// ETag is left alone, as an edit of the JSON file while Azurite is stopped would). 404 when
// no such blob. And
//
//   GET /blobs   every blob record: [[account, container, name, size, lastModified, etag]]
//
// which the tests compare before and after a run to prove the store unchanged (the JSON file
// on disk is written every few seconds, so it cannot tell). The port is written to the file
// named by AZURITE_AGE_PORT_FILE.
"use strict";
const http = require("http");
const fs = require("fs");

const azuriteDir = process.env.AZURITE_AGE_MODULES;
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));
const BLOBS = "$BLOBS_COLLECTION$";
let blobs = null;
const getCollection = Loki.prototype.getCollection;
Loki.prototype.getCollection = function (name) {
  const found = getCollection.call(this, name);
  if (name === BLOBS && found) blobs = found;
  return found;
};
const addCollection = Loki.prototype.addCollection;
Loki.prototype.addCollection = function (name, options) {
  const made = addCollection.call(this, name, options);
  if (name === BLOBS) blobs = made;
  return made;
};

function age(job) {
  const when = new Date(job.lastModified);
  if (!blobs || Number.isNaN(when.getTime())) return 400;
  const doc = blobs.findOne({ accountName: job.account, containerName: job.container, name: job.blob, snapshot: "" });
  if (!doc) return 404;
  doc.properties.lastModified = when;
  blobs.update(doc);
  return 204;
}

function records() {
  if (!blobs) return [];
  return blobs.find({}).map((d) => [
    d.accountName, d.containerName, d.name, d.properties.contentLength,
    new Date(d.properties.lastModified).toISOString(), d.properties.etag, d.snapshot,
  ]);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/blobs") {
    const json = JSON.stringify(records());
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(json), connection: "close" });
    res.end(json);
    return;
  }
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    let status = 400;
    try {
      if (req.method === "POST" && req.url === "/age") status = age(JSON.parse(body));
    } catch (e) {
      status = 400;
    }
    res.writeHead(status, { "content-length": "0", connection: "close" });
    res.end();
  });
});
server.listen(0, "127.0.0.1", () => {
  const file = process.env.AZURITE_AGE_PORT_FILE;
  fs.writeFileSync(file + ".part", String(server.address().port));
  fs.renameSync(file + ".part", file);
});
server.unref();
