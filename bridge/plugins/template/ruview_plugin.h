/* ruview_plugin.h - the ruview-bridge plugin ABI for C (docs/plugins.md), freestanding wasm32.
 *
 * A plugin is a wasm32 module that imports functions from the module "homecore" (the seed's
 * name, ADR-128) and exports alloc, dealloc, setup_entry, receive_event, call_service_handler
 * and, optionally, teardown. Strings and JSON cross the boundary as (pointer, length) pairs in
 * the plugin's own linear memory; the host writes into buffers it gets from the plugin's alloc.
 * No buffer crossing the boundary may exceed RV_MAX_BUFFER bytes.
 *
 * Build (see plugins/build.sh): python -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib
 *   -Wl,--no-entry -Wl,--strip-all -Iplugins/pdk -o plugin.wasm plugin.c
 *
 * This header is also the plugin's tiny runtime: `alloc` is a bump allocator for the host (which
 * allocates its delivery buffer once, and a larger one only when an event does not fit; the
 * allocator starts over when every buffer has been given back), and a small reader for the
 * compact JSON the host sends. A plugin keeps its own data in static arrays.
 */
#ifndef RUVIEW_PLUGIN_H
#define RUVIEW_PLUGIN_H

#include <stdint.h>
#include <stddef.h>

#define RV_MAX_BUFFER 65536

/* Return codes of every host import: >= 0 is success (for hc_state_get, the bytes written). */
#define RV_OK 0
#define RV_NOT_FOUND -1          /* no such entity / service */
#define RV_BUFFER_TOO_SMALL -2   /* hc_state_get: the answer does not fit in out_cap */
#define RV_DENIED -3             /* the manifest grants no permission for this (audited) */
#define RV_BAD_POINTER -4        /* a pointer or length outside the plugin's memory, or > RV_MAX_BUFFER */
#define RV_INVALID -5            /* not UTF-8 / JSON / a valid entity id, topic or event type */
#define RV_FAILED -6             /* the service (or publish) failed */
#define RV_RATE_LIMITED -7       /* more host calls than limits.host_calls_per_s allows */

#define RV_IMPORT(n) __attribute__((import_module("homecore"), import_name(#n)))
#define RV_EXPORT(n) __attribute__((export_name(#n)))

RV_IMPORT(hc_log) int32_t hc_log(int32_t level, const char *msg, int32_t msg_len);
RV_IMPORT(hc_state_get) int32_t hc_state_get(const char *entity_id, int32_t entity_len, char *out, int32_t out_cap);
RV_IMPORT(hc_state_set) int32_t hc_state_set(const char *entity_id, int32_t entity_len, const char *state,
                                             int32_t state_len, const char *attrs_json, int32_t attrs_len);
RV_IMPORT(hc_event_fire) int32_t hc_event_fire(const char *type, int32_t type_len, const char *data_json,
                                               int32_t data_len);
RV_IMPORT(hc_service_call) int32_t hc_service_call(const char *domain, int32_t domain_len, const char *service,
                                                   int32_t service_len, const char *data_json, int32_t data_len);
RV_IMPORT(hc_entity_register) int32_t hc_entity_register(const char *config_json, int32_t config_len);
RV_IMPORT(hc_mqtt_publish) int32_t hc_mqtt_publish(const char *topic, int32_t topic_len, const char *payload,
                                                   int32_t payload_len, int32_t qos, int32_t retain);
RV_IMPORT(hc_mqtt_subscribe) int32_t hc_mqtt_subscribe(const char *filter, int32_t filter_len);

/* Log levels, as Python's logging. */
#define RV_DEBUG 10
#define RV_INFO 20
#define RV_WARNING 30
#define RV_ERROR 40

/* ------------------------------------------------------------------ memory */

extern unsigned char __heap_base; /* provided by wasm-ld */
static uintptr_t rv_top;
static int32_t rv_outstanding;

RV_EXPORT(alloc) void *rv_alloc(int32_t size) {
  if (size < 0) return 0;
  if (!rv_top || rv_outstanding == 0) rv_top = (uintptr_t)&__heap_base;
  uintptr_t p = (rv_top + 7) & ~(uintptr_t)7, end = p + (uintptr_t)size;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
  if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1) return 0;
  rv_top = end;
  rv_outstanding++;
  return (void *)p;
}

RV_EXPORT(dealloc) void rv_dealloc(void *p, int32_t size) {
  (void)p; (void)size;
  if (rv_outstanding > 0) rv_outstanding--;
}

/* ------------------------------------------------------------------ strings */

static inline int32_t rv_strlen(const char *s) { int32_t n = 0; while (s[n]) n++; return n; }

static inline int rv_eq(const char *a, int32_t an, const char *b) {
  int32_t i = 0;
  for (; i < an && b[i]; i++) if (a[i] != b[i]) return 0;
  return i == an && !b[i];
}

static inline int rv_same(const char *a, const char *b, int32_t n) {
  for (int32_t i = 0; i < n; i++) if (a[i] != b[i]) return 0;
  return 1;
}

static inline int rv_ends_with(const char *a, int32_t an, const char *suffix) {
  int32_t n = rv_strlen(suffix);
  return an >= n && rv_eq(a + an - n, n, suffix);
}

static inline void rv_copy(char *dst, const char *src, int32_t n) { for (int32_t i = 0; i < n; i++) dst[i] = src[i]; }

/* Append s (n bytes) to buf at *at, never past cap; returns 0 when it did not fit. */
static inline int rv_put(char *buf, int32_t cap, int32_t *at, const char *s, int32_t n) {
  if (*at + n > cap) return 0;
  rv_copy(buf + *at, s, n);
  *at += n;
  return 1;
}

static inline int rv_puts(char *buf, int32_t cap, int32_t *at, const char *s) { return rv_put(buf, cap, at, s, rv_strlen(s)); }

static inline void rv_log(int32_t level, const char *msg) { hc_log(level, msg, rv_strlen(msg)); }

/* ------------------------------------------------------------------ JSON (compact, as the host writes it) */

typedef struct { const char *p; int32_t n; } rv_span; /* a JSON value's text; n == 0: absent */

static inline int32_t rv_skip_ws(const char *j, int32_t n, int32_t i) {
  while (i < n && (j[i] == ' ' || j[i] == '\n' || j[i] == '\r' || j[i] == '\t')) i++;
  return i;
}

/* The index just past the JSON value starting at i (strings, objects, arrays, literals). */
static inline int32_t rv_value_end(const char *j, int32_t n, int32_t i) {
  if (i >= n) return n;
  if (j[i] == '"') {
    for (i++; i < n; i++) {
      if (j[i] == '\\') i++;
      else if (j[i] == '"') return i + 1;
    }
    return n;
  }
  if (j[i] == '{' || j[i] == '[') {
    int32_t depth = 0;
    for (; i < n; i++) {
      char c = j[i];
      if (c == '"') { i = rv_value_end(j, n, i) - 1; continue; }
      if (c == '{' || c == '[') depth++;
      else if (c == '}' || c == ']') { if (--depth == 0) return i + 1; }
    }
    return n;
  }
  while (i < n && j[i] != ',' && j[i] != '}' && j[i] != ']') i++;
  return i;
}

/* The value of `key` in the object `obj` (top level only). */
static inline rv_span rv_get(rv_span obj, const char *key) {
  rv_span none = {0, 0};
  const char *j = obj.p; int32_t n = obj.n, i = rv_skip_ws(j, n, 0);
  if (i >= n || j[i] != '{') return none;
  i++;
  while (i < n) {
    i = rv_skip_ws(j, n, i);
    if (i >= n || j[i] != '"') return none;
    int32_t kstart = i + 1, kend = rv_value_end(j, n, i) - 1;
    i = rv_skip_ws(j, n, kend + 1);
    if (i >= n || j[i] != ':') return none;
    i = rv_skip_ws(j, n, i + 1);
    int32_t vend = rv_value_end(j, n, i);
    if (rv_eq(j + kstart, kend - kstart, key)) { rv_span v = {j + i, vend - i}; return v; }
    i = rv_skip_ws(j, n, vend);
    if (i < n && j[i] == ',') i++;
    else return none;
  }
  return none;
}

/* A string value's bytes, without quotes (escapes left as they are); n == 0 if not a string. */
static inline rv_span rv_str(rv_span v) {
  rv_span none = {0, 0};
  if (v.n < 2 || v.p[0] != '"') return none;
  rv_span s = {v.p + 1, v.n - 2};
  return s;
}

static inline int rv_is(rv_span v, const char *literal) { return rv_eq(v.p, v.n, literal); }

/* A number value (or a string holding one, as states are); returns 0 if it is neither. */
static inline int rv_num(rv_span v, double *out) {
  if (v.n >= 2 && v.p[0] == '"') { v.p++; v.n -= 2; }
  int32_t i = 0; double sign = 1, value = 0, scale = 1; int digits = 0;
  if (i < v.n && (v.p[i] == '-' || v.p[i] == '+')) { if (v.p[i] == '-') sign = -1; i++; }
  for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++, digits++) value = value * 10 + (v.p[i] - '0');
  if (i < v.n && v.p[i] == '.') {
    for (i++; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++, digits++) { scale /= 10; value += (v.p[i] - '0') * scale; }
  }
  if (!digits || i != v.n) return 0;
  *out = sign * value;
  return 1;
}

#endif
