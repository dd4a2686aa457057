// The alert sound: a Web Audio beep (no audio file), with a remembered mute switch.
// Browsers allow audio only after a user gesture; `unlockAudio` is called on the first click.

const MUTE_KEY = "zhizhi.muted";
let context = null;

export function muted() {
  return localStorage.getItem(MUTE_KEY) === "1";
}

export function setMuted(value) {
  localStorage.setItem(MUTE_KEY, value ? "1" : "0");
}

export function unlockAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  context ??= new Context();
  if (context.state === "suspended") context.resume().catch(() => {});
}

/** Whether the browser still holds the sound back (no click on the page yet since it loaded). */
export function audioBlocked() {
  return !context || context.state !== "running";
}

/** Three short high beeps; dispatches `zhizhi:alert-sound` on window (played or muted). */
export function alertBeep(reason) {
  const played = !muted();
  if (played) {
    unlockAudio();
    if (context) {
      const start = context.currentTime + 0.02;
      for (let i = 0; i < 3; i += 1) {
        const oscillator = context.createOscillator();
        const gain = context.createGain();
        oscillator.type = "square";
        oscillator.frequency.value = 1320;
        const at = start + i * 0.22;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.16);
        oscillator.connect(gain).connect(context.destination);
        oscillator.start(at);
        oscillator.stop(at + 0.18);
      }
    }
  }
  window.dispatchEvent(new CustomEvent("zhizhi:alert-sound", { detail: { reason, played } }));
}
