// Server-Sent Events read from a fetch() response. EventSource cannot send an
// Authorization header; fetch can, and a locked API needs one on every request.

/**
 * The events of a `text/event-stream` body, as {event, data}, in order. Comments (the
 * keep-alives) are skipped; an event without data is not dispatched (as in the spec).
 */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // the last line may be incomplete
      for (const line of lines) {
        if (line === "") {
          if (data.length > 0) yield { event: name || "message", data: data.join("\n") };
          name = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
