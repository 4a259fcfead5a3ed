// SVT-AV1's encoder header, for ccmsvtav1enc and its tests: SVT-AV1 defines TRUE
// and FALSE as glib does, in its own words, so glib's are kept around it.
#pragma once

#pragma push_macro("TRUE")
#pragma push_macro("FALSE")
#undef TRUE
#undef FALSE
#include <EbSvtAv1Enc.h>
#undef TRUE
#undef FALSE
#pragma pop_macro("TRUE")
#pragma pop_macro("FALSE")
