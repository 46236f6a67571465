/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decapsulator's load-time knobs, set from Rust in the skeleton's rodata
 * before load. Being const, the verifier sees their values and prunes the
 * branches not taken.
 */
#ifndef LNETD_DECAP_CONFIG_H
#define LNETD_DECAP_CONFIG_H

#include "../decap_shared.h"

const volatile enum decap_other_labels other_labels = DECAP_OTHER_PASS;

#endif /* LNETD_DECAP_CONFIG_H */
