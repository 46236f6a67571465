/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Puts the decapsulator's ABI enums into its object's BTF, for Rust. */
#ifndef LNETD_DECAP_ABI_H
#define LNETD_DECAP_ABI_H

#include "../decap_shared.h"

/*
 * Never read by the program: referencing the ABI enums here puts them into the
 * object's BTF, from which the skeleton generates them for Rust (a type reaches
 * BTF only when something uses it).
 */
const volatile struct {
	enum decap_limits limits;
	enum decap_counter counter;
} decap_abi = {};

#endif /* LNETD_DECAP_ABI_H */
