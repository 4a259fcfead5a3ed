// Receives the demo's video with RTCPeerConnection, shows live figures and exposes
// window.ccmReceiverStats() for tests. No build step, no libraries.
'use strict';

const video = document.getElementById('video');
const stateEl = document.getElementById('state');
const figuresEl = document.getElementById('figures');
const errorEl = document.getElementById('error');

let pc = null;
let ws = null;
let senderStats = {};
const latency = { last: null, samples: [] };  // glass-to-glass, ms
let previous = null;  // last inbound-rtp report, for rates
let senderError = null;  // the sender's {"type":"error"} text, kept once shown

function setState(text) { stateEl.textContent = senderError ? 'error' : text; }

// The sender could not send (its pipeline failed: a missing element names the Debian
// package to install): say so on the page instead of a state that never moves on.
function showError(text) {
  senderError = text;
  errorEl.textContent = `The sender failed: ${text}`;
  errorEl.hidden = false;
  setState('error');
}
window.ccmSenderError = () => senderError;

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.ontrack = (event) => {
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  pc.onicecandidate = (event) => {
    if (event.candidate && event.candidate.candidate)
      send({ type: 'ice', candidate: event.candidate.candidate, sdpMLineIndex: event.candidate.sdpMLineIndex });
  };
  pc.onconnectionstatechange = () => setState(pc.connectionState);

  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => setState('signalling');
  ws.onclose = () => setState('signalling closed');
  ws.onmessage = async (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === 'offer') {
      await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      send({ type: 'answer', sdp: pc.localDescription.sdp });
    } else if (message.type === 'ice') {
      try {
        await pc.addIceCandidate({ candidate: message.candidate, sdpMLineIndex: message.sdpMLineIndex });
      } catch (e) { console.warn('ICE candidate refused', e); }
    } else if (message.type === 'sender-stats') {
      senderStats = message;
    } else if (message.type === 'error') {
      showError(String(message.message || 'unknown error'));
    }
  };
}

// The sender paints the capture time (ms, 32 bits) in row 0 and the frame number
// (16 bits) in row 1 as black/white blocks of width/40 (multiple of 4) pixels.
const canvas = document.createElement('canvas');
const ctx = canvas.getContext('2d', { willReadFrequently: true });
function readStamp() {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return null;
  const block = Math.max(4, Math.floor(w / 40) & ~3);
  canvas.width = 32 * block;
  canvas.height = 2 * block;
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const bit = (row, i) => {
    const x = i * block + (block >> 1), y = row * block + (block >> 1);
    return pixels[(y * canvas.width + x) * 4 + 1] > 128 ? 1 : 0;  // green ~ luma
  };
  let time = 0;
  for (let i = 0; i < 32; i++) time = time * 2 + bit(0, i);
  let frame = 0;
  for (let i = 0; i < 16; i++) frame = frame * 2 + bit(1, i);
  return { time, frame };
}

function onVideoFrame(now, metadata) {
  const stamp = readStamp();
  if (stamp) {
    // Both ends share the machine's clock; the stamp holds the low 32 bits of ms.
    const shownAt = performance.timeOrigin + (metadata.expectedDisplayTime || now);
    const ms = ((Math.floor(shownAt) - stamp.time) % 4294967296 + 4294967296) % 4294967296;
    if (ms < 60000) {
      latency.last = ms;
      latency.samples.push(ms);
      if (latency.samples.length > 300) latency.samples.shift();
    }
  }
  video.requestVideoFrameCallback(onVideoFrame);
}
if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) video.requestVideoFrameCallback(onVideoFrame);

async function receiverStats() {
  const out = { framesDecoded: 0, frameWidth: 0, frameHeight: 0, codec: '', framesPerSecond: 0,
                framesDropped: 0, framesReceived: 0, jitterBufferDelayMs: 0, bitrateKbps: 0, packetsLost: 0,
                keyFramesDecoded: 0, pliCount: 0, firCount: 0, nackCount: 0, connectionState: pc ? pc.connectionState : 'new',
                latencyMs: latency.last, latencyMedianMs: null, sender: senderStats };
  if (latency.samples.length) {
    const sorted = [...latency.samples].sort((a, b) => a - b);
    out.latencyMedianMs = sorted[sorted.length >> 1];
  }
  if (!pc) return out;
  const report = await pc.getStats();
  let inbound = null;
  report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s; });
  if (!inbound) return out;
  const codec = inbound.codecId ? report.get(inbound.codecId) : null;
  out.codec = codec ? codec.mimeType : '';
  for (const k of ['framesDecoded', 'frameWidth', 'frameHeight', 'framesPerSecond', 'framesDropped',
                   'framesReceived', 'packetsLost', 'keyFramesDecoded', 'pliCount', 'firCount', 'nackCount'])
    if (inbound[k] !== undefined) out[k] = inbound[k];
  if (inbound.jitterBufferEmittedCount)
    out.jitterBufferDelayMs = 1000 * inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount;
  if (previous && inbound.timestamp > previous.timestamp) {
    out.bitrateKbps = 8 * (inbound.bytesReceived - previous.bytesReceived) / (inbound.timestamp - previous.timestamp);
    const emitted = inbound.jitterBufferEmittedCount - previous.jitterBufferEmittedCount;
    if (emitted > 0)
      out.jitterBufferDelayNowMs = 1000 * (inbound.jitterBufferDelay - previous.jitterBufferDelay) / emitted;
  }
  previous = inbound;
  return out;
}
window.ccmReceiverStats = receiverStats;

function row(name, value) { return `<tr><td>${name}</td><td>${value}</td></tr>`; }
const fixed = (v, n = 0) => (typeof v === 'number' ? v.toFixed(n) : '–');

setInterval(async () => {
  const s = await receiverStats();
  figuresEl.innerHTML =
    row('codec', s.codec || '–') +
    row('resolution', s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : '–') +
    row('fps', fixed(s.framesPerSecond)) +
    row('bitrate', `${fixed(s.bitrateKbps)} kbit/s`) +
    row('jitter-buffer delay', `${fixed(s.jitterBufferDelayNowMs ?? s.jitterBufferDelayMs)} ms`) +
    row('frames decoded / dropped', `${s.framesDecoded} / ${s.framesDropped}`) +
    row('packets lost', s.packetsLost) +
    row('glass-to-glass', s.latencyMs === null ? '–' : `${fixed(s.latencyMs)} ms (median ${fixed(s.latencyMedianMs)})`) +
    row('sender encoder', senderStats.encoder || '–') +
    row('sender target / sent', `${fixed(senderStats.targetKbps)} / ${fixed(senderStats.sentKbps)} kbit/s`) +
    row('sender RTT / loss', `${fixed(senderStats.rttMs, 1)} ms / ${fixed(100 * (senderStats.fractionLost || 0), 1)} %`) +
    row('key-unit requests at the encoder', senderStats.keyUnitRequests ?? '–');
}, 1000);

connect();
