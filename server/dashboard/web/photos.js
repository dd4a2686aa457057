// Photos taken on the phone for 反馈 and 核查: decoded by the browser, scaled to at most
// MAX_SIDE pixels and re-encoded as JPEG (smaller uploads over a phone's connection, and the
// camera's EXIF, location included, is left behind), then uploaded as the incident's evidence.

import { request } from "./api.js";

const MAX_SIDE = 1920;
const QUALITY = 0.85;

export class PhotoUnreadable extends Error {}

/** A JPEG Blob of the picture in `file`; PhotoUnreadable when the browser cannot decode it. */
export async function preparePhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new PhotoUnreadable(file.name);
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close?.();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", QUALITY));
  if (!blob) throw new PhotoUnreadable(file.name);
  return blob;
}

/** Upload a prepared photo to an incident; the stored evidence entry (with its sha256). */
export function uploadPhoto(incidentId, blob, stage) {
  return request("POST", `/api/v1/incidents/${incidentId}/photos`, {
    body: blob,
    contentType: "image/jpeg",
    query: { stage },
  });
}
